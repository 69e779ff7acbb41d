#include "services/pipeline_config/testing/in_process_server.h"

#include <utility>

namespace crm::pipeline_config {

InProcessPipelineConfig::InProcessPipelineConfig(
    std::string data_dir, std::string secret, std::set<int64_t> admin_user_ids,
    DealCounter* deal_counter)
    : data_dir_(std::move(data_dir)),
      admin_user_ids_(std::move(admin_user_ids)),
      deal_counter_(deal_counter != nullptr ? deal_counter : &no_deals_),
      authenticator_(secret, /*insecure_dev_auth=*/false),
      page_tokens_(secret) {}

InProcessPipelineConfig::~InProcessPipelineConfig() { Stop(); }

absl::Status InProcessPipelineConfig::Start(int port) {
  absl::StatusOr<std::unique_ptr<ConfigStore>> store =
      ConfigStore::Open(data_dir_, common::RocksOptions{});
  if (!store.ok()) return store.status();
  store_ = std::move(store).value();
  notifier_ = std::make_unique<VersionNotifier>();
  absl::StatusOr<std::unique_ptr<ConfigManager>> manager =
      ConfigManager::Create(*store_, *deal_counter_, *notifier_);
  if (!manager.ok()) return manager.status();
  manager_ = std::move(manager).value();
  deps_ = std::make_unique<ServiceDeps>(ServiceDeps{
      *manager_, *notifier_, authenticator_, page_tokens_, admin_user_ids_});
  pipelines_ = std::make_unique<PipelinesServiceImpl>(*deps_);
  fields_ = std::make_unique<FieldsServiceImpl>(*deps_);
  access_ = std::make_unique<AccessServiceImpl>(*deps_);
  common::ServerOptions options;
  options.service_name = "pipeline-config-test";
  options.host = "127.0.0.1";
  options.grpc_port = port;
  options.http_port = -1;
  options.shutdown_grace = absl::Seconds(2);
  runner_ = std::make_unique<common::ServerRunner>(options, metrics_);
  runner_->AddService(pipelines_.get(),
                      v1::PipelinesService::service_full_name());
  runner_->AddService(fields_.get(),
                      v1::DealFieldsService::service_full_name());
  runner_->AddService(access_.get(), v1::AccessService::service_full_name());
  return runner_->Start();
}

void InProcessPipelineConfig::Stop() {
  if (notifier_ != nullptr) notifier_->Close();
  if (runner_ != nullptr) runner_->Shutdown();
  runner_.reset();
  access_.reset();
  fields_.reset();
  pipelines_.reset();
  deps_.reset();
  manager_.reset();
  notifier_.reset();
  store_.reset();
}

int InProcessPipelineConfig::port() const {
  return runner_ == nullptr ? 0 : runner_->grpc_port();
}

int64_t InProcessPipelineConfig::version() const { return manager_->version(); }

}  // namespace crm::pipeline_config
