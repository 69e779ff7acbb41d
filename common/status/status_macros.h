// Early-return helpers for absl::Status / absl::StatusOr (Debian's Abseil
// 20220623 ships none).
//
//   absl::StatusOr<Deal> Load(int64_t id) {
//     CRM_RETURN_IF_ERROR(ValidateId(id));
//     CRM_ASSIGN_OR_RETURN(Record record, store.Get(id));
//     return ToDeal(record);
//   }
#pragma once

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define CRM_STATUS_CONCAT_INNER_(a, b) a##b
#define CRM_STATUS_CONCAT_(a, b) CRM_STATUS_CONCAT_INNER_(a, b)

// Evaluates `expr` (an absl::Status) and returns it from the enclosing
// function when it is not OK.
// The variable name carries the line number so that nested uses (a lambda
// inside the expression) do not shadow each other.
#define CRM_RETURN_IF_ERROR(expr) \
  CRM_RETURN_IF_ERROR_IMPL_(CRM_STATUS_CONCAT_(crm_status_, __LINE__), expr)
#define CRM_RETURN_IF_ERROR_IMPL_(status, expr)          \
  do {                                                   \
    const ::absl::Status& status = (expr);               \
    if (ABSL_PREDICT_FALSE(!status.ok())) return status; \
  } while (false)

// Evaluates `rexpr` (an absl::StatusOr<T>); on error returns its status, else
// moves the value into `lhs` (which may be a declaration).
#define CRM_ASSIGN_OR_RETURN(lhs, rexpr)                                       \
  CRM_ASSIGN_OR_RETURN_IMPL_(CRM_STATUS_CONCAT_(crm_statusor_, __LINE__), lhs, \
                             rexpr)

#define CRM_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                               \
  if (ABSL_PREDICT_FALSE(!statusor.ok())) {              \
    return std::move(statusor).status();                 \
  }                                                      \
  lhs = std::move(statusor).value()
