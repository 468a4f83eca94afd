import type { Metadata } from "@grpc/grpc-js";
import { BadRequest, ErrorInfo } from "./gen/google/rpc/error_details";
import { Status } from "./gen/google/rpc/status";

/** The trailer that carries a failed call's google.rpc.Status, binary protobuf. */
export const STATUS_DETAILS_TRAILER = "grpc-status-details-bin";

/** A failed call's google.rpc.Status and the details the gateway puts in it. */
export interface ErrorDetails {
  status: Status;
  /** domain "mam-gateway" and a stable reason (docs/errors.md). */
  errorInfo?: ErrorInfo;
  /** One field violation per bad field, e.g. "order.volume". */
  badRequest?: BadRequest;
}

/** Decodes the grpc-status-details-bin trailer of a failed call; undefined when absent. */
export function errorDetails(error: { metadata?: Metadata }): ErrorDetails | undefined {
  const [raw] = error.metadata?.get(STATUS_DETAILS_TRAILER) ?? [];
  if (raw === undefined || typeof raw === "string") {
    return undefined;
  }
  const status = Status.decode(raw);
  const details: ErrorDetails = { status };
  for (const any of status.details) {
    const typeName = any.typeUrl.slice(any.typeUrl.lastIndexOf("/") + 1);
    if (typeName === "google.rpc.ErrorInfo") {
      details.errorInfo = ErrorInfo.decode(any.value);
    } else if (typeName === "google.rpc.BadRequest") {
      details.badRequest = BadRequest.decode(any.value);
    }
  }
  return details;
}
