// Submits one master order to a running gateway and prints its allocation and fills.
//
//   make run                                        # repo root, one terminal
//   npm run example -- --volume 1.00 --symbol EURUSD  # clients/typescript, another
//
// Options: --target HOST:PORT (default 127.0.0.1:50051), --group NAME (default demo), --symbol,
// --side buy|sell, --volume. The API key comes from MAM_API_KEY, else from var/admin.key in the
// repository root (the admin key `make run` creates on first start), found by looking up from
// the working directory.
import { type ClientOptions, credentials, type ServiceError } from "@grpc/grpc-js";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { parseArgs } from "node:util";
import {
  AccountServiceClient,
  allocationReasonToJSON,
  apiKeyInterceptor,
  callUnary,
  errorDetails,
  GetMasterOrderRequest,
  MasterOrderSpec,
  MasterOrderState,
  masterOrderStateToJSON,
  OrderType,
  Side,
  SubmitMasterOrderRequest,
  SubscribeFillsRequest,
  type SubscribeFillsResponse,
  TradingServiceClient,
} from "../src";

/**
 * MAM_API_KEY, else the key in var/admin.key of the working directory or the nearest directory
 * above it that has one (the repository root's, from clients/typescript); undefined if none.
 */
function apiKey(): string | undefined {
  if (process.env.MAM_API_KEY) {
    return process.env.MAM_API_KEY;
  }
  for (let dir = process.cwd(); ; dir = path.dirname(dir)) {
    try {
      return readFileSync(path.join(dir, "var", "admin.key"), "utf8").trim();
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") {
        throw error;
      }
    }
    if (path.dirname(dir) === dir) {
      return undefined;
    }
  }
}

async function main(): Promise<number> {
  const { values: args } = parseArgs({
    options: {
      target: { type: "string", default: "127.0.0.1:50051" },
      group: { type: "string", default: "demo" },
      symbol: { type: "string", default: "EURUSD" },
      side: { type: "string", default: "buy" },
      volume: { type: "string", default: "1.00" },
    },
  });
  const key = apiKey();
  const options: Partial<ClientOptions> = key ? { interceptors: [apiKeyInterceptor(key)] } : {};
  const accounts = new AccountServiceClient(args.target, credentials.createInsecure(), options);
  const trading = new TradingServiceClient(args.target, credentials.createInsecure(), options);
  try {
    let groupId = "";
    let pageToken = "";
    do {
      const page = await callUnary(accounts, accounts.listGroups, { pageSize: 0, pageToken });
      groupId = page.groups.find((g) => g.name === args.group)?.groupId ?? "";
      pageToken = groupId ? "" : page.nextPageToken;
    } while (pageToken);
    if (!groupId) {
      throw new Error(`no group named ${args.group}`);
    }

    // Subscribe first; the first message (a heartbeat) says the stream is live.
    const stream = trading.subscribeFills(SubscribeFillsRequest.fromPartial({ liveOnly: true }));
    stream.on("error", () => {}); // the CANCELLED status of stream.cancel() below
    const fills: AsyncIterator<SubscribeFillsResponse> = stream[Symbol.asyncIterator]();
    await fills.next();

    let master;
    try {
      ({ masterOrder: master } = await callUnary(
        trading,
        trading.submitMasterOrder,
        SubmitMasterOrderRequest.fromPartial({
          order: MasterOrderSpec.fromPartial({
            clientOrderId: `ts-example-${Date.now()}`,
            groupId,
            symbol: args.symbol,
            side: args.side === "sell" ? Side.SIDE_SELL : Side.SIDE_BUY,
            type: OrderType.ORDER_TYPE_MARKET,
            volume: args.volume,
          }),
        }),
      ));
    } catch (e) {
      const error = e as ServiceError;
      console.error(`rejected: ${error.code}: ${error.details}`);
      const details = errorDetails(error);
      if (details?.errorInfo) {
        console.error(`  reason ${details.errorInfo.reason} (${details.errorInfo.domain})`);
      }
      for (const v of details?.badRequest?.fieldViolations ?? []) {
        console.error(`  ${v.field}: ${v.description}`);
      }
      stream.cancel();
      return 1;
    }
    if (!master) {
      throw new Error("no master order in the response");
    }
    console.log(
      `master order ${master.masterOrderId}: ${args.volume} ${args.symbol} ` +
        `over ${master.childCount} child orders`,
    );
    for (const line of master.allocation?.lines ?? []) {
      const reasons = line.reasons.map((r) => allocationReasonToJSON(r).slice(18)).join(",");
      console.log(
        `  ${line.accountId}  equity ${line.basis.padStart(10)}  target ` +
          `${line.targetVolume.padStart(13)}  -> ${(line.volume || "0").padStart(6)}  ${reasons}`,
      );
    }

    const getMaster = async () =>
      (
        await callUnary(
          trading,
          trading.getMasterOrder,
          GetMasterOrderRequest.fromPartial({ masterOrderId: master.masterOrderId }),
        )
      ).masterOrder;
    let received = 0;
    while (received < master.childCount) {
      const message = await fills.next();
      if (message.done) {
        break;
      }
      for (const fill of message.value.batch?.fills ?? []) {
        if (fill.masterOrderId !== master.masterOrderId) {
          continue;
        }
        received++;
        console.log(
          `fill #${fill.sequence}: ${fill.accountId} ${fill.volume} @ ${fill.price} ` +
            `(slippage ${fill.slippagePoints} points)`,
        );
      }
      // A quiet stream: stop once the order has ended (some children may be rejected).
      if (message.value.heartbeatSequence) {
        const now = await getMaster();
        if (now && now.state >= MasterOrderState.MASTER_ORDER_STATE_FILLED) {
          break;
        }
      }
    }
    stream.cancel();

    const final = await getMaster();
    if (!final) {
      throw new Error("no master order in the response");
    }
    const skew = final.execution?.dispatchSkew;
    const skewMs = skew ? Number(skew.seconds) * 1000 + Math.round(skew.nanos / 1e6) : 0;
    console.log(
      `${masterOrderStateToJSON(final.state)}: filled ${final.filledVolume} lots at ` +
        `${final.averageFillPrice} average, ${final.filledChildCount} filled / ` +
        `${final.rejectedChildCount} rejected, dispatch skew ${skewMs} ms`,
    );
    return 0;
  } finally {
    accounts.close();
    trading.close();
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error) => {
    console.error(error);
    process.exitCode = 1;
  },
);
