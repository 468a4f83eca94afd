package io.github.mamgateway.example;

import com.google.protobuf.Any;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.rpc.BadRequest;
import com.google.rpc.ErrorInfo;
import io.github.mamgateway.client.ApiKeyCredentials;
import io.grpc.Context;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.StatusProto;
import io.grpc.stub.AbstractStub;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Iterator;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import mam.v1.AccountOuterClass.Group;
import mam.v1.AccountServiceGrpc;
import mam.v1.AccountServiceOuterClass.ListGroupsRequest;
import mam.v1.AccountServiceOuterClass.ListGroupsResponse;
import mam.v1.Common.OrderType;
import mam.v1.Common.Side;
import mam.v1.Order.AllocationLine;
import mam.v1.Order.Fill;
import mam.v1.Order.MasterOrder;
import mam.v1.Order.MasterOrderSpec;
import mam.v1.Order.MasterOrderState;
import mam.v1.TradingServiceGrpc;
import mam.v1.TradingServiceGrpc.TradingServiceBlockingStub;
import mam.v1.TradingServiceOuterClass.GetMasterOrderRequest;
import mam.v1.TradingServiceOuterClass.SubmitMasterOrderRequest;
import mam.v1.TradingServiceOuterClass.SubscribeFillsRequest;
import mam.v1.TradingServiceOuterClass.SubscribeFillsResponse;

/**
 * Submits one master order to a running gateway and prints its allocation and fills.
 *
 * <pre>
 * make run                                                        # repo root, one terminal
 * mvn -q compile exec:java -Dexec.args="--volume 1.00 --symbol EURUSD"   # clients/java
 * </pre>
 *
 * <p>Options: --target HOST:PORT (default 127.0.0.1:50051), --group NAME (default demo), --symbol,
 * --side buy|sell, --volume. The API key comes from MAM_API_KEY, else from var/admin.key in the
 * repository root (the admin key {@code make run} creates on first start), found by looking up
 * from the working directory.
 */
public final class SubmitAndWatch {
  private SubmitAndWatch() {}

  public static void main(String[] args) throws Exception {
    String target = "127.0.0.1:50051";
    String groupName = "demo";
    String symbol = "EURUSD";
    Side side = Side.SIDE_BUY;
    String volume = "1.00";
    for (int i = 0; i + 1 < args.length; i += 2) {
      switch (args[i]) {
        case "--target" -> target = args[i + 1];
        case "--group" -> groupName = args[i + 1];
        case "--symbol" -> symbol = args[i + 1];
        case "--side" -> side = args[i + 1].equals("sell") ? Side.SIDE_SELL : Side.SIDE_BUY;
        case "--volume" -> volume = args[i + 1];
        default -> throw new IllegalArgumentException("unknown option " + args[i]);
      }
    }

    ManagedChannel channel = ManagedChannelBuilder.forTarget(target).usePlaintext().build();
    Context.CancellableContext stream = Context.current().withCancellation();
    try {
      String key = apiKey();
      var accounts =
          withKey(AccountServiceGrpc.newBlockingStub(channel), key)
              .withDeadlineAfter(1, TimeUnit.MINUTES);
      TradingServiceBlockingStub trading =
          withKey(TradingServiceGrpc.newBlockingStub(channel), key)
              .withDeadlineAfter(1, TimeUnit.MINUTES);
      String groupId = findGroup(accounts, groupName);

      // Subscribe first; the first message (a heartbeat) says the stream is live.
      Iterator<SubscribeFillsResponse> fills =
          stream.call(
              () -> trading.subscribeFills(SubscribeFillsRequest.newBuilder().setLiveOnly(true).build()));
      fills.next();

      MasterOrder master;
      try {
        master =
            trading
                .submitMasterOrder(
                    SubmitMasterOrderRequest.newBuilder()
                        .setOrder(
                            MasterOrderSpec.newBuilder()
                                .setClientOrderId("java-example-" + System.nanoTime())
                                .setGroupId(groupId)
                                .setSymbol(symbol)
                                .setSide(side)
                                .setType(OrderType.ORDER_TYPE_MARKET)
                                .setVolume(volume))
                        .build())
                .getMasterOrder();
      } catch (StatusRuntimeException e) {
        printError(e);
        System.exit(1);
        return;
      }
      System.out.printf(
          "master order %s: %s %s over %d child orders%n",
          master.getMasterOrderId(), volume, symbol, master.getChildCount());
      for (AllocationLine line : master.getAllocation().getLinesList()) {
        String reasons =
            line.getReasonsList().stream()
                .map(r -> r.name().substring("ALLOCATION_REASON_".length()))
                .collect(Collectors.joining(","));
        System.out.printf(
            "  %s  equity %10s  target %13s  -> %6s  %s%n",
            line.getAccountId(),
            line.getBasis(),
            line.getTargetVolume(),
            line.getVolume().isEmpty() ? "0" : line.getVolume(),
            reasons);
      }

      int received = 0;
      while (received < master.getChildCount() && fills.hasNext()) {
        SubscribeFillsResponse message = fills.next();
        for (Fill fill : message.getBatch().getFillsList()) {
          if (!fill.getMasterOrderId().equals(master.getMasterOrderId())) {
            continue;
          }
          received++;
          System.out.printf(
              "fill #%d: %s %s @ %s (slippage %s points)%n",
              fill.getSequence(),
              fill.getAccountId(),
              fill.getVolume(),
              fill.getPrice(),
              fill.getSlippagePoints());
        }
        // A quiet stream: stop once the order has ended (some children may be rejected).
        if (message.getHeartbeatSequence() != 0
            && get(trading, master).getStateValue()
                >= MasterOrderState.MASTER_ORDER_STATE_FILLED_VALUE) {
          break;
        }
      }

      MasterOrder last = get(trading, master);
      System.out.printf(
          "%s: filled %s lots at %s average, %d filled / %d rejected, dispatch skew %d ms%n",
          last.getState(),
          last.getFilledVolume(),
          last.getAverageFillPrice(),
          last.getFilledChildCount(),
          last.getRejectedChildCount(),
          last.getExecution().getDispatchSkew().getSeconds() * 1000
              + last.getExecution().getDispatchSkew().getNanos() / 1_000_000);
    } finally {
      stream.cancel(null);
      channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
  }

  /** The stub, sending key as {@code authorization: Bearer <key>} on every call; as is without. */
  private static <S extends AbstractStub<S>> S withKey(S stub, String key) {
    return key == null ? stub : stub.withCallCredentials(new ApiKeyCredentials(key));
  }

  /**
   * MAM_API_KEY, else the key in var/admin.key of the working directory or the nearest directory
   * above it that has one (the repository root's, from clients/java); null when there is none.
   */
  private static String apiKey() throws IOException {
    String key = System.getenv("MAM_API_KEY");
    if (key != null && !key.isEmpty()) {
      return key;
    }
    for (Path dir = Path.of("").toAbsolutePath(); dir != null; dir = dir.getParent()) {
      Path file = dir.resolve("var").resolve("admin.key");
      if (Files.isRegularFile(file)) {
        return Files.readString(file).strip();
      }
    }
    return null;
  }

  private static MasterOrder get(TradingServiceBlockingStub trading, MasterOrder master) {
    return trading
        .getMasterOrder(
            GetMasterOrderRequest.newBuilder().setMasterOrderId(master.getMasterOrderId()).build())
        .getMasterOrder();
  }

  private static String findGroup(AccountServiceGrpc.AccountServiceBlockingStub accounts, String name) {
    String token = "";
    do {
      ListGroupsResponse page =
          accounts.listGroups(ListGroupsRequest.newBuilder().setPageToken(token).build());
      for (Group g : page.getGroupsList()) {
        if (g.getName().equals(name)) {
          return g.getGroupId();
        }
      }
      token = page.getNextPageToken();
    } while (!token.isEmpty());
    throw new IllegalArgumentException("no group named " + name);
  }

  /** A failed call's status with its ErrorInfo reason and field violations. */
  private static void printError(StatusRuntimeException e) throws InvalidProtocolBufferException {
    System.err.printf("rejected: %s: %s%n", e.getStatus().getCode(), e.getStatus().getDescription());
    com.google.rpc.Status status = StatusProto.fromThrowable(e);
    if (status == null) {
      return;
    }
    for (Any detail : status.getDetailsList()) {
      if (detail.is(ErrorInfo.class)) {
        ErrorInfo info = detail.unpack(ErrorInfo.class);
        System.err.printf("  reason %s (%s)%n", info.getReason(), info.getDomain());
      } else if (detail.is(BadRequest.class)) {
        for (BadRequest.FieldViolation v : detail.unpack(BadRequest.class).getFieldViolationsList()) {
          System.err.printf("  %s: %s%n", v.getField(), v.getDescription());
        }
      }
    }
  }
}
