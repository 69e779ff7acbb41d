#include "services/pipeline_config/api/pipelines_service_impl.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/proto_buffer_reader.h"
#include "grpcpp/support/slice.h"

#include "common/grpc/raw_messages.h"
#include "common/grpc/unary_call.h"
#include "common/rocks/key_codec.h"
#include "common/status/status_macros.h"
#include "services/pipeline_config/domain/validation.h"

namespace crm::pipeline_config {
namespace {

// Streams the config version to one watcher: at once when the caller's
// known version is behind, then after every change. Versions that arrive
// while a write is in flight are coalesced into the newest one.
class WatchReactor final : public grpc::ServerWriteReactor<v1::ConfigVersion> {
 public:
  // Subscribes before reading the current version, so a change landing in
  // between is streamed rather than lost. `known_version` only decides the
  // first message; every change after that is sent, even when the caller
  // believed it was ahead (e.g. after the store was restored from a backup).
  WatchReactor(VersionNotifier& notifier, const ConfigManager& manager,
               int64_t known_version)
      : notifier_(notifier) {
    handle_ =
        notifier_.Subscribe([this](int64_t version) { OnVersion(version); });
    const int64_t current = manager.version();
    if (current > known_version) OnVersion(current);
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) {
      FinishLocked(
          grpc::Status(grpc::StatusCode::CANCELLED, "watch stream broken"));
      return;
    }
    if (cancelled_) {
      FinishLocked(
          grpc::Status(grpc::StatusCode::CANCELLED, "watch cancelled"));
      return;
    }
    MaybeWriteLocked();
  }

  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
    if (!writing_)
      FinishLocked(
          grpc::Status(grpc::StatusCode::CANCELLED, "watch cancelled"));
  }

  void OnDone() override {
    notifier_.Unsubscribe(handle_);
    delete this;
  }

 private:
  void OnVersion(int64_t version) {
    absl::MutexLock lock(&mu_);
    if (version == VersionNotifier::kClosed) {
      closing_ = true;
      if (!writing_) {
        FinishLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                  "server shutting down"));
      }
      return;
    }
    latest_ = std::max(latest_, version);
    MaybeWriteLocked();
  }

  void MaybeWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_ || writing_ || cancelled_) return;
    if (closing_) {
      FinishLocked(
          grpc::Status(grpc::StatusCode::UNAVAILABLE, "server shutting down"));
      return;
    }
    if (latest_ <= sent_) return;
    writing_ = true;
    sent_ = latest_;
    message_.set_version(latest_);
    StartWrite(&message_);
  }

  void FinishLocked(const grpc::Status& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    finished_ = true;
    Finish(status);
  }

  VersionNotifier& notifier_;
  int64_t handle_ = 0;
  absl::Mutex mu_;
  int64_t sent_ ABSL_GUARDED_BY(mu_) = -1;
  int64_t latest_ ABSL_GUARDED_BY(mu_) = -1;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  v1::ConfigVersion message_ ABSL_GUARDED_BY(mu_);
};

// A stream that ends at once with an error (e.g. a bad token).
class FailedWriter final : public grpc::ServerWriteReactor<v1::ConfigVersion> {
 public:
  explicit FailedWriter(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

v1::Pipeline Compose(const PipelineEntry& entry, bool with_stages) {
  v1::Pipeline pipeline = entry.pipeline;
  if (with_stages) {
    for (const auto& stage : entry.stages) *pipeline.add_stages() = stage;
  }
  return pipeline;
}

// GetPipeline and ListStages: one pipeline's pre-serialized `part`
// (its record or its stages) as the raw answer to `request`.
template <typename Request>
absl::Status AnswerPipelinePart(const ServiceDeps& deps,
                                const grpc::CallbackServerContext& context,
                                const grpc::ByteBuffer& request,
                                std::string PipelineEntry::*part,
                                grpc::ByteBuffer* response) {
  CRM_RETURN_IF_ERROR(Authenticate(deps, context).status());
  Request parsed;
  CRM_RETURN_IF_ERROR(common::ParseRawRequest(request, &parsed));
  const auto snapshot = deps.manager.Snapshot();
  const PipelineEntry* entry = snapshot->FindPipeline(parsed.pipeline_id());
  if (entry == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("pipeline ", parsed.pipeline_id(), " not found"));
  }
  common::SetRawResponse(entry->*part, response);
  return absl::OkStatus();
}

}  // namespace

grpc::ServerUnaryReactor* PipelinesServiceImpl::CreatePipeline(
    grpc::CallbackServerContext* context,
    const v1::CreatePipelineRequest* request, v1::Pipeline* response) {
  return common::RunUnary(
      context, /*pool=*/nullptr, "pipeline-config", [&]() -> absl::Status {
        CRM_ASSIGN_OR_RETURN(Caller caller, Authenticate(deps_, *context));
        CRM_RETURN_IF_ERROR(RequireConfig(caller, *deps_.manager.Snapshot()));
        CRM_ASSIGN_OR_RETURN(
            *response, deps_.manager.CreatePipeline(request->pipeline(),
                                                    request->request_id()));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* PipelinesServiceImpl::GetPipeline(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  return common::RunUnary(
      context, /*pool=*/nullptr, "pipeline-config", [&]() -> absl::Status {
        return AnswerPipelinePart<v1::GetPipelineRequest>(
            deps_, *context, *request, &PipelineEntry::wire_pipeline, response);
      });
}

grpc::ServerUnaryReactor* PipelinesServiceImpl::ListPipelines(
    grpc::CallbackServerContext* context,
    const v1::ListPipelinesRequest* request,
    v1::ListPipelinesResponse* response) {
  return common::RunUnary(
      context, /*pool=*/nullptr, "pipeline-config", [&]() -> absl::Status {
        CRM_RETURN_IF_ERROR(Authenticate(deps_, *context).status());
        const auto snapshot = deps_.manager.Snapshot();
        // Ordered by (sort, id); the key of each is the cursor.
        std::vector<std::pair<std::string, const PipelineEntry*>> ordered;
        ordered.reserve(snapshot->pipelines.size());
        for (const auto& [id, entry] : snapshot->pipelines) {
          std::string key;
          common::AppendInt64(&key, entry.pipeline.sort());
          common::AppendInt64(&key, id);
          ordered.emplace_back(std::move(key), &entry);
        }
        std::sort(ordered.begin(), ordered.end());
        std::vector<std::string> keys;
        keys.reserve(ordered.size());
        for (const auto& item : ordered) keys.push_back(item.first);
        return Paginate(
            keys, request->page_size(), request->page_token(), "pipelines",
            deps_.page_tokens,
            [&](size_t i) {
              v1::Pipeline* added = response->add_pipelines();
              *added = Compose(*ordered[i].second, request->include_stages());
              return added->ByteSizeLong();
            },
            response->mutable_next_page_token());
      });
}

grpc::ServerUnaryReactor* PipelinesServiceImpl::UpdatePipeline(
    grpc::CallbackServerContext* context,
    const v1::UpdatePipelineRequest* request, v1::Pipeline* response) {
  return common::RunUnary(
      context, /*pool=*/nullptr, "pipeline-config", [&]() -> absl::Status {
        CRM_ASSIGN_OR_RETURN(Caller caller, Authenticate(deps_, *context));
        CRM_RETURN_IF_ERROR(RequireConfig(caller, *deps_.manager.Snapshot()));
        CRM_ASSIGN_OR_RETURN(
            *response,
            deps_.manager.UpdatePipeline(
                request->pipeline(), request->update_mask(), request->etag()));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* PipelinesServiceImpl::FinishOnPool(
    grpc::CallbackServerContext* context, std::function<absl::Status()> body) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (!deletes_.TrySubmit([reactor, body = std::move(body)] {
        reactor->Finish(common::ToGrpcStatus(body()));
      })) {
    reactor->Finish(
        grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                     "too many deletes in progress; retry with backoff"));
  }
  return reactor;
}

grpc::ServerUnaryReactor* PipelinesServiceImpl::DeletePipeline(
    grpc::CallbackServerContext* context,
    const v1::DeletePipelineRequest* request,
    google::protobuf::Empty* /*response*/) {
  return FinishOnPool(context, [this, context, request]() -> absl::Status {
    CRM_ASSIGN_OR_RETURN(Caller caller, Authenticate(deps_, *context));
    CRM_RETURN_IF_ERROR(RequireConfig(caller, *deps_.manager.Snapshot()));
    return deps_.manager.DeletePipeline(request->pipeline_id(),
                                        request->etag());
  });
}

grpc::ServerUnaryReactor* PipelinesServiceImpl::CreateStage(
    grpc::CallbackServerContext* context, const v1::CreateStageRequest* request,
    v1::Stage* response) {
  return common::RunUnary(
      context, /*pool=*/nullptr, "pipeline-config", [&]() -> absl::Status {
        CRM_ASSIGN_OR_RETURN(Caller caller, Authenticate(deps_, *context));
        CRM_RETURN_IF_ERROR(RequireConfig(caller, *deps_.manager.Snapshot()));
        CRM_ASSIGN_OR_RETURN(*response,
                             deps_.manager.CreateStage(request->pipeline_id(),
                                                       request->stage()));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* PipelinesServiceImpl::GetStage(
    grpc::CallbackServerContext* context, const v1::GetStageRequest* request,
    v1::Stage* response) {
  return common::RunUnary(
      context, /*pool=*/nullptr, "pipeline-config", [&]() -> absl::Status {
        CRM_RETURN_IF_ERROR(Authenticate(deps_, *context).status());
        const auto snapshot = deps_.manager.Snapshot();
        if (snapshot->FindPipeline(request->pipeline_id()) == nullptr) {
          return absl::NotFoundError(
              absl::StrCat("pipeline ", request->pipeline_id(), " not found"));
        }
        CRM_ASSIGN_OR_RETURN(
            const std::string stage_id,
            NormalizeStageId(request->pipeline_id(), request->stage_id()));
        const v1::Stage* stage =
            snapshot->FindStage(request->pipeline_id(), stage_id);
        if (stage == nullptr) {
          return absl::NotFoundError(absl::StrCat("stage \"", stage_id,
                                                  "\" not found in pipeline ",
                                                  request->pipeline_id()));
        }
        *response = *stage;
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* PipelinesServiceImpl::ListStages(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  return common::RunUnary(
      context, /*pool=*/nullptr, "pipeline-config", [&]() -> absl::Status {
        return AnswerPipelinePart<v1::ListStagesRequest>(
            deps_, *context, *request, &PipelineEntry::wire_stages, response);
      });
}

grpc::ServerUnaryReactor* PipelinesServiceImpl::UpdateStage(
    grpc::CallbackServerContext* context, const v1::UpdateStageRequest* request,
    v1::Stage* response) {
  return common::RunUnary(
      context, /*pool=*/nullptr, "pipeline-config", [&]() -> absl::Status {
        CRM_ASSIGN_OR_RETURN(Caller caller, Authenticate(deps_, *context));
        CRM_RETURN_IF_ERROR(RequireConfig(caller, *deps_.manager.Snapshot()));
        CRM_ASSIGN_OR_RETURN(
            *response,
            deps_.manager.UpdateStage(request->stage(), request->update_mask(),
                                      request->etag()));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* PipelinesServiceImpl::DeleteStage(
    grpc::CallbackServerContext* context, const v1::DeleteStageRequest* request,
    google::protobuf::Empty* /*response*/) {
  return FinishOnPool(context, [this, context, request]() -> absl::Status {
    CRM_ASSIGN_OR_RETURN(Caller caller, Authenticate(deps_, *context));
    CRM_RETURN_IF_ERROR(RequireConfig(caller, *deps_.manager.Snapshot()));
    return deps_.manager.DeleteStage(request->pipeline_id(),
                                     request->stage_id(), request->etag());
  });
}

grpc::ServerUnaryReactor* PipelinesServiceImpl::ReorderStages(
    grpc::CallbackServerContext* context,
    const v1::ReorderStagesRequest* request, v1::ListStagesResponse* response) {
  return common::RunUnary(
      context, /*pool=*/nullptr, "pipeline-config", [&]() -> absl::Status {
        CRM_ASSIGN_OR_RETURN(Caller caller, Authenticate(deps_, *context));
        CRM_RETURN_IF_ERROR(RequireConfig(caller, *deps_.manager.Snapshot()));
        CRM_ASSIGN_OR_RETURN(
            std::vector<v1::Stage> stages,
            deps_.manager.ReorderStages(
                request->pipeline_id(),
                {request->stage_ids().begin(), request->stage_ids().end()}));
        for (auto& stage : stages) *response->add_stages() = std::move(stage);
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* PipelinesServiceImpl::GetConfigVersion(
    grpc::CallbackServerContext* context,
    const v1::GetConfigVersionRequest* /*request*/,
    v1::ConfigVersion* response) {
  return common::RunUnary(
      context, /*pool=*/nullptr, "pipeline-config", [&]() -> absl::Status {
        CRM_RETURN_IF_ERROR(Authenticate(deps_, *context).status());
        response->set_version(deps_.manager.version());
        return absl::OkStatus();
      });
}

grpc::ServerWriteReactor<v1::ConfigVersion>* PipelinesServiceImpl::WatchConfig(
    grpc::CallbackServerContext* context,
    const v1::WatchConfigRequest* request) {
  const absl::Status auth = Authenticate(deps_, *context).status();
  if (!auth.ok()) return new FailedWriter(common::ToGrpcStatus(auth));
  if (request->known_version() < 0) {
    return new FailedWriter(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                         "known_version: must be >= 0"));
  }
  return new WatchReactor(deps_.notifier, deps_.manager,
                          request->known_version());
}

}  // namespace crm::pipeline_config
