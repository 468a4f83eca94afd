// The generated @grpc/grpc-js client against a real gateway process (node --test).
import { credentials, status as GrpcStatus, type ServiceError } from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import {
  AccountServiceClient,
  apiKeyInterceptor,
  callUnary,
  CreateAccountRequest,
  errorDetails,
  GetMasterOrderRequest,
  type Group,
  ListAccountsRequest,
  MasterOrderSpec,
  MasterOrderState,
  OrderType,
  Platform,
  Side,
  SubmitMasterOrderRequest,
  SubscribeFillsRequest,
  type SubscribeFillsResponse,
  TradingServiceClient,
} from "../src";
import { type Gateway, startGateway } from "./gateway";

let gateway: Gateway;
let accounts: AccountServiceClient;
let trading: TradingServiceClient;

before(async () => {
  gateway = await startGateway();
  const options = { interceptors: [apiKeyInterceptor(gateway.apiKey)] };
  accounts = new AccountServiceClient(gateway.target, credentials.createInsecure(), options);
  trading = new TradingServiceClient(gateway.target, credentials.createInsecure(), options);
});

after(async () => {
  accounts?.close();
  trading?.close();
  await gateway?.stop();
});

/** A decimal string as an exact integer count of 10^-8 units. */
function units(decimal: string): bigint {
  const match = /^(-?)(\d+)(?:\.(\d{0,8}))?$/.exec(decimal);
  assert.ok(match, `not a decimal: ${JSON.stringify(decimal)}`);
  const value = BigInt(match[2] + (match[3] ?? "").padEnd(8, "0"));
  return match[1] ? -value : value;
}

async function findGroup(name: string): Promise<Group> {
  let pageToken = "";
  do {
    const page = await callUnary(accounts, accounts.listGroups, { pageSize: 0, pageToken });
    const group = page.groups.find((g) => g.name === name);
    if (group) {
      return group;
    }
    pageToken = page.nextPageToken;
  } while (pageToken);
  assert.fail(`no group named ${name}`);
}

function order(group: Group, volume: string, clientOrderId: string): MasterOrderSpec {
  return MasterOrderSpec.fromPartial({
    clientOrderId,
    groupId: group.groupId,
    symbol: "EURUSD",
    side: Side.SIDE_BUY,
    type: OrderType.ORDER_TYPE_MARKET,
    volume,
  });
}

test("a call without a key is UNAUTHENTICATED with reason API_KEY_MISSING", async () => {
  const anonymous = new AccountServiceClient(gateway.target, credentials.createInsecure());
  try {
    const error = await callUnary(anonymous, anonymous.listGroups, {
      pageSize: 0,
      pageToken: "",
    }).then(
      () => assert.fail("a call without a key was accepted"),
      (e: ServiceError) => e,
    );
    assert.equal(error.code, GrpcStatus.UNAUTHENTICATED);
    const details = errorDetails(error);
    assert.ok(details, "no google.rpc.Status");
    assert.equal(details.status.code, GrpcStatus.UNAUTHENTICATED);
    assert.equal(details.errorInfo?.domain, "mam-gateway");
    assert.equal(details.errorInfo?.reason, "API_KEY_MISSING");
  } finally {
    anonymous.close();
  }
});

test("a created account is listed exactly once across pages", async () => {
  const unique = `${process.pid}-${Date.now()}`;
  const name = `ts-client-${unique}`;
  const { account } = await callUnary(
    accounts,
    accounts.createAccount,
    CreateAccountRequest.fromPartial({
      account: {
        name,
        platform: Platform.PLATFORM_SIMULATED,
        login: 9_000_000n + BigInt(Date.now() % 1_000_000),
        currency: "USD",
        simulated: { initialBalance: "34567.89" },
      },
    }),
  );
  assert.ok(account?.accountId);
  assert.equal(account.name, name);
  assert.equal(account.platform, Platform.PLATFORM_SIMULATED);
  assert.equal(units(account.snapshot?.balance ?? ""), units("34567.89"));

  const seen = new Map<string, number>();
  let pages = 0;
  let pageToken = "";
  do {
    const page = await callUnary(
      accounts,
      accounts.listAccounts,
      ListAccountsRequest.fromPartial({ pageSize: 6, pageToken }),
    );
    pages++;
    assert.ok(page.accounts.length <= 6, `page of ${page.accounts.length}`);
    for (const a of page.accounts) {
      seen.set(a.accountId, (seen.get(a.accountId) ?? 0) + 1);
    }
    pageToken = page.nextPageToken;
  } while (pageToken);
  assert.equal(seen.get(account.accountId), 1, "the new account is listed once");
  const total = [...seen.values()].reduce((a, b) => a + b, 0);
  assert.equal(total, seen.size, "an account was listed twice");
  assert.ok(total >= 21, `${total} accounts: want the 20 demo accounts and the new one`);
  assert.equal(pages, Math.ceil(total / 6), `${total} accounts over ${pages} pages of 6`);
});

test("preview, submit, and every fill of the order on a live stream", async () => {
  const group = await findGroup("demo");

  const { allocation } = await callUnary(trading, trading.previewAllocation, {
    order: order(group, "1.00", ""),
  });
  assert.ok(allocation);
  assert.equal(units(allocation.requestedVolume), units("1"));
  assert.equal(allocation.lines.length, group.members.length);
  const previewed = new Map(allocation.lines.map((line) => [line.accountId, line.volume]));
  const sum = allocation.lines.reduce((s, line) => s + (line.volume ? units(line.volume) : 0n), 0n);
  assert.ok(sum > 0n);
  assert.equal(sum, units(allocation.allocatedVolume), "the lines add up to the allocated volume");

  // A live fill stream: its first message, a heartbeat, says it is live.
  const stream = trading.subscribeFills(
    SubscribeFillsRequest.fromPartial({ liveOnly: true }),
    { deadline: Date.now() + 60_000 },
  );
  const messages: AsyncIterator<SubscribeFillsResponse> = stream[Symbol.asyncIterator]();
  try {
    const first = await messages.next();
    assert.equal(first.done, false, "the stream ended before its first message");
    assert.equal(first.value.batch?.fills.length ?? 0, 0, "fills on a live-only stream");

    const clientOrderId = `ts-${process.pid}-${Date.now()}`;
    const { masterOrder: master } = await callUnary(
      trading,
      trading.submitMasterOrder,
      SubmitMasterOrderRequest.fromPartial({ order: order(group, "1.00", clientOrderId) }),
    );
    assert.ok(master?.masterOrderId);
    assert.ok(master.childCount > 0);
    assert.equal(master.spec?.clientOrderId, clientOrderId);
    for (const line of master.allocation?.lines ?? []) {
      assert.equal(line.volume, previewed.get(line.accountId), line.accountId);
    }

    const children = new Set<string>();
    let filled = 0n;
    let lastSequence = 0n;
    while (children.size < master.childCount) {
      const message = await messages.next();
      assert.equal(message.done, false, `stream ended after ${children.size} fills`);
      for (const fill of message.value.batch?.fills ?? []) {
        assert.ok(fill.sequence > lastSequence, "fills in sequence order");
        lastSequence = fill.sequence;
        if (fill.masterOrderId === master.masterOrderId) {
          assert.ok(!children.has(fill.childOrderId), "second fill of a child");
          children.add(fill.childOrderId);
          filled += units(fill.volume);
        }
      }
    }
    assert.equal(filled, units(master.allocation?.allocatedVolume ?? ""), "fills add up");

    const { masterOrder: got } = await callUnary(
      trading,
      trading.getMasterOrder,
      GetMasterOrderRequest.fromPartial({ masterOrderId: master.masterOrderId }),
    );
    assert.equal(got?.state, MasterOrderState.MASTER_ORDER_STATE_FILLED);
    assert.equal(got?.filledChildCount, master.childCount);
  } finally {
    stream.on("error", () => {}); // the CANCELLED status that cancel() causes
    stream.cancel();
  }
});

test("a bad volume is INVALID_ARGUMENT with BadRequest and ErrorInfo in its trailers", async () => {
  const group = await findGroup("demo");
  const error = await callUnary(
    trading,
    trading.submitMasterOrder,
    SubmitMasterOrderRequest.fromPartial({
      order: order(group, "abc", `ts-bad-${process.pid}-${Date.now()}`),
    }),
  ).then(
    () => assert.fail("a volume of \"abc\" was accepted"),
    (e: ServiceError) => e,
  );
  assert.equal(error.code, GrpcStatus.INVALID_ARGUMENT);
  assert.equal(error.metadata.get("grpc-status-details-bin").length, 1, "the details trailer");

  const details = errorDetails(error);
  assert.ok(details, "no google.rpc.Status");
  assert.equal(details.status.code, GrpcStatus.INVALID_ARGUMENT);
  assert.equal(details.errorInfo?.domain, "mam-gateway");
  assert.ok(details.errorInfo?.reason);
  assert.deepEqual(
    details.badRequest?.fieldViolations.map((v) => v.field),
    ["order.volume"],
  );
});
