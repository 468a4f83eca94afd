import { InterceptingCall, type Interceptor } from "@grpc/grpc-js";

/**
 * A client interceptor that sends a mam-gateway API key with every call, unary and streaming,
 * as metadata `authorization: Bearer <key>` (docs/access-control.md):
 *
 *     new TradingServiceClient(target, credentials.createInsecure(), {
 *       interceptors: [apiKeyInterceptor(key)],
 *     });
 *
 * An interceptor rather than call credentials: grpc-js refuses to compose call credentials with
 * insecure channel credentials, and the gateway accepts plaintext on loopback (anywhere else
 * the channel is TLS and the key travels encrypted).
 */
export function apiKeyInterceptor(key: string): Interceptor {
  const authorization = `Bearer ${key}`;
  return (options, nextCall) =>
    new InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        metadata.set("authorization", authorization);
        next(metadata, listener);
      },
    });
}
