import type { CallOptions, ClientUnaryCall, Metadata, ServiceError } from "@grpc/grpc-js";
import { Metadata as GrpcMetadata } from "@grpc/grpc-js";

type UnaryMethod<Req, Res> = (
  request: Req,
  metadata: Metadata,
  options: Partial<CallOptions>,
  callback: (error: ServiceError | null, response: Res) => void,
) => ClientUnaryCall;

/**
 * A unary call as a promise: `await callUnary(client, client.getAccount, { accountId })`.
 * Rejects with the grpc-js ServiceError (see errorDetails for its google.rpc details).
 */
export function callUnary<Req, Res>(
  client: object,
  method: UnaryMethod<Req, Res>,
  request: Req,
  options: Partial<CallOptions> = { deadline: Date.now() + 30_000 },
  metadata: Metadata = new GrpcMetadata(),
): Promise<Res> {
  return new Promise((resolve, reject) => {
    method.call(client, request, metadata, options, (error, response) =>
      error ? reject(error) : resolve(response),
    );
  });
}
