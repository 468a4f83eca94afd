package io.github.mamgateway.client;

import io.grpc.CallCredentials;
import io.grpc.Metadata;
import java.util.Objects;
import java.util.concurrent.Executor;

/**
 * Sends a mam-gateway API key with every call, as metadata {@code authorization: Bearer <key>}
 * (docs/access-control.md):
 *
 * <pre>{@code
 * TradingServiceBlockingStub trading =
 *     TradingServiceGrpc.newBlockingStub(channel).withCallCredentials(new ApiKeyCredentials(key));
 * }</pre>
 *
 * <p>It applies over a plaintext channel too: the gateway accepts plaintext only on loopback (or
 * behind a TLS-terminating proxy), so anywhere else the channel is TLS and the key travels
 * encrypted.
 */
public final class ApiKeyCredentials extends CallCredentials {
  /** The metadata key the gateway reads the API key from. */
  public static final Metadata.Key<String> AUTHORIZATION =
      Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER);

  private final String header;

  /** @param key an API key, {@code mam_<key id>_<secret>} */
  public ApiKeyCredentials(String key) {
    this.header = "Bearer " + Objects.requireNonNull(key, "key");
  }

  @Override
  public void applyRequestMetadata(
      RequestInfo requestInfo, Executor appExecutor, MetadataApplier applier) {
    Metadata headers = new Metadata();
    headers.put(AUTHORIZATION, header);
    applier.apply(headers);
  }

  @Override
  public String toString() {
    return "ApiKeyCredentials"; // never the key
  }
}
