// gRPC handler of crm.pipelines.v1.PipelinesService: authenticate, check
// CONFIG for changes, call the ConfigManager, map, convert the status once.
#pragma once

#include "crm/pipelines/v1/pipelines_service.grpc.pb.h"

#include "common/concurrency/worker_pool.h"
#include "services/pipeline_config/api/call_context.h"

namespace crm::pipeline_config {

// GetPipeline and ListStages, the reads every consumer makes, are raw
// methods: they send the reply bytes serialized once per config version
// (PipelineEntry::wire_*) instead of copying and serializing protos per call.
class PipelinesServiceImpl final
    : public v1::PipelinesService::WithRawCallbackMethod_GetPipeline<
          v1::PipelinesService::WithRawCallbackMethod_ListStages<
              v1::PipelinesService::CallbackService>> {
 public:
  explicit PipelinesServiceImpl(const ServiceDeps& deps)
      : deps_(deps), deletes_(common::WorkerPoolOptions{2, 100}) {}

  // crm::pipelines::v1::PipelinesService::CallbackService
  grpc::ServerUnaryReactor* CreatePipeline(
      grpc::CallbackServerContext* context,
      const v1::CreatePipelineRequest* request,
      v1::Pipeline* response) override;
  grpc::ServerUnaryReactor* GetPipeline(grpc::CallbackServerContext* context,
                                        const grpc::ByteBuffer* request,
                                        grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* ListPipelines(
      grpc::CallbackServerContext* context,
      const v1::ListPipelinesRequest* request,
      v1::ListPipelinesResponse* response) override;
  grpc::ServerUnaryReactor* UpdatePipeline(
      grpc::CallbackServerContext* context,
      const v1::UpdatePipelineRequest* request,
      v1::Pipeline* response) override;
  grpc::ServerUnaryReactor* DeletePipeline(
      grpc::CallbackServerContext* context,
      const v1::DeletePipelineRequest* request,
      google::protobuf::Empty* response) override;
  grpc::ServerUnaryReactor* CreateStage(grpc::CallbackServerContext* context,
                                        const v1::CreateStageRequest* request,
                                        v1::Stage* response) override;
  grpc::ServerUnaryReactor* GetStage(grpc::CallbackServerContext* context,
                                     const v1::GetStageRequest* request,
                                     v1::Stage* response) override;
  grpc::ServerUnaryReactor* ListStages(grpc::CallbackServerContext* context,
                                       const grpc::ByteBuffer* request,
                                       grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* UpdateStage(grpc::CallbackServerContext* context,
                                        const v1::UpdateStageRequest* request,
                                        v1::Stage* response) override;
  grpc::ServerUnaryReactor* DeleteStage(
      grpc::CallbackServerContext* context,
      const v1::DeleteStageRequest* request,
      google::protobuf::Empty* response) override;
  grpc::ServerUnaryReactor* ReorderStages(
      grpc::CallbackServerContext* context,
      const v1::ReorderStagesRequest* request,
      v1::ListStagesResponse* response) override;
  grpc::ServerUnaryReactor* GetConfigVersion(
      grpc::CallbackServerContext* context,
      const v1::GetConfigVersionRequest* request,
      v1::ConfigVersion* response) override;
  grpc::ServerWriteReactor<v1::ConfigVersion>* WatchConfig(
      grpc::CallbackServerContext* context,
      const v1::WatchConfigRequest* request) override;

 private:
  // Runs `body` on deletes_ (it waits for the deals service) and finishes
  // the call with its status; RESOURCE_EXHAUSTED when the queue is full.
  grpc::ServerUnaryReactor* FinishOnPool(grpc::CallbackServerContext* context,
                                         std::function<absl::Status()> body);

  const ServiceDeps& deps_;
  // DeletePipeline and DeleteStage ask deals to count, a network call that
  // must not hold a gRPC callback thread.
  common::WorkerPool deletes_;
};

}  // namespace crm::pipeline_config
