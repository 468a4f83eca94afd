package io.github.mamgateway.client;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

/**
 * A real gateway on a free port, started through clients/testing/start_gateway.py (fresh SQLite
 * file, demo config, authentication on). The launcher prints the admin key the gateway created,
 * then the address. Closing it closes the launcher's stdin: the launcher sends SIGTERM to the
 * gateway, waits for it and exits 0 after a clean stop.
 */
final class GatewayProcess implements AutoCloseable {
  private static final String READY = "mam-gateway listening on ";
  private static final String ADMIN_KEY = "mam-gateway admin key ";

  private final Process launcher;
  private final String target;
  private final String apiKey;

  private GatewayProcess(Process launcher, String target, String apiKey) {
    this.launcher = launcher;
    this.target = target;
    this.apiKey = apiKey;
  }

  static GatewayProcess start() throws Exception {
    String script = System.getProperty("mam.gateway.launcher", "../testing/start_gateway.py");
    Process process =
        new ProcessBuilder("python3", script)
            .redirectError(ProcessBuilder.Redirect.INHERIT)
            .start();
    BufferedReader stdout =
        new BufferedReader(new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8));
    CompletableFuture<GatewayProcess> ready =
        CompletableFuture.supplyAsync(
            () -> {
              String key = null;
              try {
                for (String line; (line = stdout.readLine()) != null; ) {
                  if (line.startsWith(ADMIN_KEY)) {
                    key = line.substring(ADMIN_KEY.length()).trim();
                  } else if (line.startsWith(READY)) {
                    if (key == null) {
                      throw new IllegalStateException("the gateway launcher printed no admin key");
                    }
                    return new GatewayProcess(process, line.substring(READY.length()).trim(), key);
                  }
                }
              } catch (IOException e) {
                throw new IllegalStateException(e);
              }
              throw new IllegalStateException("gateway launcher ended before the gateway was ready");
            });
    try {
      return ready.get(150, TimeUnit.SECONDS);
    } catch (Exception e) {
      process.destroyForcibly();
      throw e;
    }
  }

  /** host:port of the gateway. */
  String target() {
    return target;
  }

  /** The admin API key the gateway created at start. */
  String apiKey() {
    return apiKey;
  }

  @Override
  public void close() throws Exception {
    launcher.getOutputStream().close();
    if (!launcher.waitFor(30, TimeUnit.SECONDS)) {
      launcher.destroyForcibly();
      throw new IllegalStateException("gateway launcher did not stop within 30 s");
    }
    if (launcher.exitValue() != 0) {
      throw new IllegalStateException("gateway launcher exited with " + launcher.exitValue());
    }
  }
}
