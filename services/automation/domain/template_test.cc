#include "services/automation/domain/template.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "common/status/status_matchers.h"

namespace crm::automation {
namespace {

using ::crm::testing::IsOk;
using ::crm::testing::StatusIs;
using ::testing::HasSubstr;

crm::deals::v1::Deal SampleDeal() {
  crm::deals::v1::Deal deal;
  deal.set_id(1025);
  deal.set_title("Fish & <Chips>");
  deal.set_stage_id("C0:WON");
  deal.set_amount("1200.50");
  deal.set_currency("EUR");
  deal.set_assignee_id(7);
  deal.set_close_date("2024-05-31");
  deal.add_contact_ids(3);
  deal.add_contact_ids(4);
  deal.set_probability(40);
  deal.set_opened(true);
  (*deal.mutable_custom_fields())["UF_CRM_COLOR"].add_values("red");
  (*deal.mutable_custom_fields())["UF_CRM_COLOR"].add_values("blue");
  (*deal.mutable_custom_fields())["UF_CRM_EMPTY"];
  deal.mutable_create_time()->set_seconds(1700000000);
  return deal;
}

TEST(ValidateTemplateTest, AcceptsWellFormedTemplates) {
  EXPECT_THAT(ValidateTemplate("subject", ""), IsOk());
  EXPECT_THAT(ValidateTemplate("subject", "Deal {{title}}"), IsOk());
  EXPECT_THAT(
      ValidateTemplate("body", "{{#close_date}}by {{.}}{{/close_date}}"),
      IsOk());
}

TEST(ValidateTemplateTest, RejectsUnclosedSectionNamingTheField) {
  EXPECT_THAT(
      ValidateTemplate("email.body", "Hi {{#title}} there"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("email.body")));
}

TEST(ValidateTemplateTest, RejectsUnterminatedTagAndMismatchedSection) {
  EXPECT_THAT(ValidateTemplate("sms", "Hi {{title"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("sms")));
  EXPECT_THAT(ValidateTemplate("sms", "{{#a}}{{/b}}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("sms")));
}

TEST(ValidateTemplateTest, EnforcesSizeLimit) {
  EXPECT_THAT(ValidateTemplate("body", std::string(kMaxTemplateBytes, 'x')),
              IsOk());
  EXPECT_THAT(ValidateTemplate("body", std::string(kMaxTemplateBytes + 1, 'x')),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("body")));
}

TEST(RenderDealTemplateTest, RendersDealFieldsByProtoName) {
  ASSERT_OK_AND_ASSIGN(
      std::string out,
      RenderDealTemplate(
          "{{id}}|{{title}}|{{stage_id}}|{{amount}} "
          "{{currency}}|{{assignee_id}}|{{close_date}}|"
          "{{contact_ids}}|{{probability}}|{{opened}}|{{closed}}",
          SampleDeal()));
  EXPECT_EQ(out,
            "1025|Fish & <Chips>|C0:WON|1200.50 EUR|7|2024-05-31|3, 4|40|"
            "true|false");
}

TEST(RenderDealTemplateTest, RendersEnumsAndTimestamps) {
  crm::deals::v1::Deal deal = SampleDeal();
  ASSERT_OK_AND_ASSIGN(std::string out,
                       RenderDealTemplate("{{create_time}}", deal));
  EXPECT_EQ(out, "2023-11-14T22:13:20Z");
  ASSERT_OK_AND_ASSIGN(std::string semantics,
                       RenderDealTemplate("{{stage_semantics}}", deal));
  EXPECT_THAT(semantics, HasSubstr("UNSPECIFIED"));
}

TEST(RenderDealTemplateTest, RendersCustomFieldsJoined) {
  ASSERT_OK_AND_ASSIGN(
      std::string out,
      RenderDealTemplate("[{{custom.UF_CRM_COLOR}}][{{custom.UF_CRM_EMPTY}}]"
                         "[{{custom.UF_CRM_MISSING}}]",
                         SampleDeal()));
  EXPECT_EQ(out, "[red, blue][][]");
}

TEST(RenderDealTemplateTest, EmptyValuesAreAbsentForSections) {
  crm::deals::v1::Deal deal;
  deal.set_title("T");
  ASSERT_OK_AND_ASSIGN(
      std::string out,
      RenderDealTemplate("{{#close_date}}due {{close_date}}{{/close_date}}"
                         "{{^currency}}no currency{{/currency}}"
                         "{{^probability}}, no probability{{/probability}}",
                         deal));
  EXPECT_EQ(out, "no currency, no probability");
}

TEST(RenderDealTemplateTest, HtmlEscapingIsOptional) {
  ASSERT_OK_AND_ASSIGN(std::string plain,
                       RenderDealTemplate("{{title}}", SampleDeal()));
  EXPECT_EQ(plain, "Fish & <Chips>");
  ASSERT_OK_AND_ASSIGN(
      std::string html,
      RenderDealTemplate("{{title}}", SampleDeal(), /*html_escape=*/true));
  EXPECT_EQ(html, "Fish &amp; &lt;Chips&gt;");
  ASSERT_OK_AND_ASSIGN(
      std::string raw,
      RenderDealTemplate("{{{title}}}", SampleDeal(), /*html_escape=*/true));
  EXPECT_EQ(raw, "Fish & <Chips>");
}

TEST(RenderDealTemplateTest, UnknownPlaceholdersAndPartialsRenderNothing) {
  ASSERT_OK_AND_ASSIGN(
      std::string out,
      RenderDealTemplate("a{{nope}}b{{> part}}c", SampleDeal()));
  EXPECT_EQ(out, "abc");
}

TEST(RenderDealTemplateTest, RejectsInvalidTemplate) {
  EXPECT_THAT(
      RenderDealTemplate("{{#title}}", SampleDeal()),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("template")));
}

}  // namespace
}  // namespace crm::automation
