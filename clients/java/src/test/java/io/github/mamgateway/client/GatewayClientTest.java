package io.github.mamgateway.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.google.protobuf.Any;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.Message;
import com.google.rpc.BadRequest;
import com.google.rpc.ErrorInfo;
import io.grpc.Context;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.StatusProto;
import java.math.BigDecimal;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import mam.v1.AccountOuterClass.Account;
import mam.v1.AccountOuterClass.Group;
import mam.v1.AccountOuterClass.SimulatedAccount;
import mam.v1.AccountServiceGrpc;
import mam.v1.AccountServiceGrpc.AccountServiceBlockingStub;
import mam.v1.AccountServiceOuterClass.CreateAccountRequest;
import mam.v1.AccountServiceOuterClass.ListAccountsRequest;
import mam.v1.AccountServiceOuterClass.ListAccountsResponse;
import mam.v1.AccountServiceOuterClass.ListGroupsRequest;
import mam.v1.AccountServiceOuterClass.ListGroupsResponse;
import mam.v1.Common.OrderType;
import mam.v1.Common.Platform;
import mam.v1.Common.Side;
import mam.v1.Order.Allocation;
import mam.v1.Order.AllocationLine;
import mam.v1.Order.Fill;
import mam.v1.Order.MasterOrder;
import mam.v1.Order.MasterOrderSpec;
import mam.v1.Order.MasterOrderState;
import mam.v1.TradingServiceGrpc;
import mam.v1.TradingServiceGrpc.TradingServiceBlockingStub;
import mam.v1.TradingServiceOuterClass.GetMasterOrderRequest;
import mam.v1.TradingServiceOuterClass.PreviewAllocationRequest;
import mam.v1.TradingServiceOuterClass.SubmitMasterOrderRequest;
import mam.v1.TradingServiceOuterClass.SubscribeFillsRequest;
import mam.v1.TradingServiceOuterClass.SubscribeFillsResponse;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** The generated grpc-java stubs against a real gateway process. */
class GatewayClientTest {
  private static GatewayProcess gateway;
  private static ManagedChannel channel;
  private static AccountServiceBlockingStub accounts;
  private static TradingServiceBlockingStub trading;

  @BeforeAll
  static void startGateway() throws Exception {
    gateway = GatewayProcess.start();
    channel = ManagedChannelBuilder.forTarget(gateway.target()).usePlaintext().build();
    ApiKeyCredentials key = new ApiKeyCredentials(gateway.apiKey());
    accounts = AccountServiceGrpc.newBlockingStub(channel).withCallCredentials(key);
    trading = TradingServiceGrpc.newBlockingStub(channel).withCallCredentials(key);
  }

  @AfterAll
  static void stopGateway() throws Exception {
    if (channel != null) {
      channel.shutdownNow().awaitTermination(10, TimeUnit.SECONDS);
    }
    if (gateway != null) {
      gateway.close();
    }
  }

  private static AccountServiceBlockingStub accounts() {
    return accounts.withDeadlineAfter(30, TimeUnit.SECONDS);
  }

  private static TradingServiceBlockingStub trading() {
    return trading.withDeadlineAfter(30, TimeUnit.SECONDS);
  }

  @Test
  void callWithoutKeyIsUnauthenticatedWithReasonApiKeyMissing() throws Exception {
    StatusRuntimeException error =
        assertThrows(
            StatusRuntimeException.class,
            () ->
                AccountServiceGrpc.newBlockingStub(channel)
                    .withDeadlineAfter(30, TimeUnit.SECONDS)
                    .listGroups(ListGroupsRequest.getDefaultInstance()));
    assertEquals(Status.Code.UNAUTHENTICATED, error.getStatus().getCode());
    ErrorInfo errorInfo = detail(error, ErrorInfo.class);
    assertNotNull(errorInfo, "no ErrorInfo in " + StatusProto.fromThrowable(error));
    assertEquals("mam-gateway", errorInfo.getDomain());
    assertEquals("API_KEY_MISSING", errorInfo.getReason());
  }

  @Test
  void createdAccountIsListedOnceAcrossPages() {
    long unique = System.nanoTime();
    String name = "java-client-" + unique;
    Account account =
        accounts()
            .createAccount(
                CreateAccountRequest.newBuilder()
                    .setAccount(
                        Account.newBuilder()
                            .setName(name)
                            .setPlatform(Platform.PLATFORM_SIMULATED)
                            .setLogin(8_000_000 + unique % 1_000_000)
                            .setCurrency("USD")
                            .setSimulated(
                                SimulatedAccount.newBuilder().setInitialBalance("23456.78")))
                    .build())
            .getAccount();
    assertFalse(account.getAccountId().isEmpty());
    assertEquals(name, account.getName());
    assertEquals(Platform.PLATFORM_SIMULATED, account.getPlatform());
    assertEquals(0, new BigDecimal("23456.78").compareTo(new BigDecimal(account.getSnapshot().getBalance())));

    Map<String, Integer> seen = new HashMap<>();
    int pages = 0;
    String token = "";
    do {
      ListAccountsResponse page =
          accounts().listAccounts(ListAccountsRequest.newBuilder().setPageSize(6).setPageToken(token).build());
      pages++;
      assertTrue(page.getAccountsCount() <= 6, "page of " + page.getAccountsCount());
      for (Account a : page.getAccountsList()) {
        seen.merge(a.getAccountId(), 1, Integer::sum);
      }
      token = page.getNextPageToken();
    } while (!token.isEmpty());
    assertEquals(1, seen.getOrDefault(account.getAccountId(), 0), "new account listed once");
    int total = seen.values().stream().mapToInt(Integer::intValue).sum();
    assertEquals(seen.size(), total, "an account listed twice: " + seen);
    assertTrue(total >= 21, total + " accounts: want the 20 demo accounts and the new one");
    assertEquals((total + 5) / 6, pages, total + " accounts over " + pages + " pages of 6");
  }

  @Test
  void previewSubmitAndEveryFillOnTheStream() throws Exception {
    Group group = findGroup("demo");
    long unique = System.nanoTime();

    Allocation preview =
        trading()
            .previewAllocation(
                PreviewAllocationRequest.newBuilder().setOrder(order(group, "1.00", "")).build())
            .getAllocation();
    assertEquals(0, BigDecimal.ONE.compareTo(new BigDecimal(preview.getRequestedVolume())));
    assertEquals(group.getMembersCount(), preview.getLinesCount());
    Map<String, String> previewed = new HashMap<>();
    BigDecimal sum = BigDecimal.ZERO;
    for (AllocationLine line : preview.getLinesList()) {
      previewed.put(line.getAccountId(), line.getVolume());
      if (!line.getVolume().isEmpty()) {
        sum = sum.add(new BigDecimal(line.getVolume()));
      }
    }
    assertTrue(sum.signum() > 0);
    assertEquals(0, sum.compareTo(new BigDecimal(preview.getAllocatedVolume())), "lines add up");

    // A live fill stream: its first message, a heartbeat, says it is live.
    Context.CancellableContext stream = Context.current().withCancellation();
    try {
      Iterator<SubscribeFillsResponse> fills =
          stream.call(
              () ->
                  trading
                      .withDeadlineAfter(60, TimeUnit.SECONDS)
                      .subscribeFills(SubscribeFillsRequest.newBuilder().setLiveOnly(true).build()));
      assertTrue(fills.hasNext(), "the stream ended before its first message");
      assertEquals(0, fills.next().getBatch().getFillsCount(), "fills on a live-only stream");

      String clientOrderId = "java-" + unique;
      MasterOrder master =
          trading()
              .submitMasterOrder(
                  SubmitMasterOrderRequest.newBuilder()
                      .setOrder(order(group, "1.00", clientOrderId))
                      .build())
              .getMasterOrder();
      assertFalse(master.getMasterOrderId().isEmpty());
      assertTrue(master.getChildCount() > 0);
      assertEquals(clientOrderId, master.getSpec().getClientOrderId());
      for (AllocationLine line : master.getAllocation().getLinesList()) {
        assertEquals(previewed.get(line.getAccountId()), line.getVolume(), line.getAccountId());
      }

      Set<String> children = new HashSet<>();
      BigDecimal filled = BigDecimal.ZERO;
      long lastSequence = 0;
      while (children.size() < master.getChildCount()) {
        assertTrue(fills.hasNext(), "stream ended after " + children.size() + " fills");
        for (Fill fill : fills.next().getBatch().getFillsList()) {
          assertTrue(Long.compareUnsigned(fill.getSequence(), lastSequence) > 0, "sequence order");
          lastSequence = fill.getSequence();
          if (fill.getMasterOrderId().equals(master.getMasterOrderId())) {
            assertTrue(children.add(fill.getChildOrderId()), "second fill of a child");
            filled = filled.add(new BigDecimal(fill.getVolume()));
          }
        }
      }
      assertEquals(
          0,
          filled.compareTo(new BigDecimal(master.getAllocation().getAllocatedVolume())),
          "fills add up to " + filled);

      MasterOrder got =
          trading()
              .getMasterOrder(
                  GetMasterOrderRequest.newBuilder()
                      .setMasterOrderId(master.getMasterOrderId())
                      .build())
              .getMasterOrder();
      assertEquals(MasterOrderState.MASTER_ORDER_STATE_FILLED, got.getState());
      assertEquals(master.getChildCount(), got.getFilledChildCount());
    } finally {
      stream.cancel(null);
    }
  }

  @Test
  void badVolumeIsInvalidArgumentWithBadRequestAndErrorInfo() throws Exception {
    Group group = findGroup("demo");
    StatusRuntimeException error =
        assertThrows(
            StatusRuntimeException.class,
            () ->
                trading()
                    .submitMasterOrder(
                        SubmitMasterOrderRequest.newBuilder()
                            .setOrder(order(group, "abc", "java-bad-" + System.nanoTime()))
                            .build()));
    assertEquals(Status.Code.INVALID_ARGUMENT, error.getStatus().getCode());

    // google.rpc.Status from the grpc-status-details-bin trailer.
    com.google.rpc.Status status = StatusProto.fromThrowable(error);
    assertNotNull(status, "no grpc-status-details-bin trailer");
    assertEquals(Status.Code.INVALID_ARGUMENT.value(), status.getCode());
    ErrorInfo errorInfo = detail(error, ErrorInfo.class);
    assertNotNull(errorInfo, "no ErrorInfo in " + status);
    assertEquals("mam-gateway", errorInfo.getDomain());
    assertFalse(errorInfo.getReason().isEmpty());
    BadRequest badRequest = detail(error, BadRequest.class);
    assertNotNull(badRequest, "no BadRequest in " + status);
    assertEquals(
        List.of("order.volume"),
        badRequest.getFieldViolationsList().stream()
            .map(BadRequest.FieldViolation::getField)
            .toList());
  }

  /**
   * The detail of the given type in a failed call's google.rpc.Status (the
   * grpc-status-details-bin trailer); null when there is none.
   */
  private static <T extends Message> T detail(StatusRuntimeException error, Class<T> type)
      throws InvalidProtocolBufferException {
    com.google.rpc.Status status = StatusProto.fromThrowable(error);
    if (status != null) {
      for (Any detail : status.getDetailsList()) {
        if (detail.is(type)) {
          return detail.unpack(type);
        }
      }
    }
    return null;
  }

  private static MasterOrderSpec order(Group group, String volume, String clientOrderId) {
    return MasterOrderSpec.newBuilder()
        .setClientOrderId(clientOrderId)
        .setGroupId(group.getGroupId())
        .setSymbol("EURUSD")
        .setSide(Side.SIDE_BUY)
        .setType(OrderType.ORDER_TYPE_MARKET)
        .setVolume(volume)
        .build();
  }

  private static Group findGroup(String name) {
    String token = "";
    do {
      ListGroupsResponse page =
          accounts().listGroups(ListGroupsRequest.newBuilder().setPageToken(token).build());
      for (Group g : page.getGroupsList()) {
        if (g.getName().equals(name)) {
          return g;
        }
      }
      token = page.getNextPageToken();
    } while (!token.isEmpty());
    return fail("no group named " + name);
  }
}
