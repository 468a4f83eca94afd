import { spawn } from "node:child_process";
import * as path from "node:path";
import * as readline from "node:readline";

const READY = "mam-gateway listening on ";
const ADMIN_KEY = "mam-gateway admin key ";

/**
 * A real gateway on a free port, started through clients/testing/start_gateway.py with
 * authentication on. The launcher prints the admin key the gateway created, then the address.
 */
export interface Gateway {
  /** host:port */
  target: string;
  /** The admin API key the gateway created at start. */
  apiKey: string;
  /** Closes the launcher's stdin: it stops the gateway (SIGTERM) and exits 0 after a clean stop. */
  stop(): Promise<void>;
}

export function startGateway(timeoutMs = 150_000): Promise<Gateway> {
  // dist/test/ -> clients/testing/
  const launcher = path.resolve(__dirname, "..", "..", "..", "testing", "start_gateway.py");
  const child = spawn("python3", [launcher], { stdio: ["pipe", "pipe", "inherit"] });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const stop = async (): Promise<void> => {
    child.stdin.end();
    const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
    const code = await exited;
    clearTimeout(timer);
    if (code !== 0) {
      throw new Error(`gateway launcher exited with ${code}`);
    }
  };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`gateway not ready after ${timeoutMs} ms`));
    }, timeoutMs);
    child.once("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`gateway launcher exited (${code}) before the gateway was ready`));
    });
    let apiKey = "";
    readline.createInterface({ input: child.stdout }).on("line", (line) => {
      if (line.startsWith(ADMIN_KEY)) {
        apiKey = line.slice(ADMIN_KEY.length).trim();
      } else if (line.startsWith(READY)) {
        clearTimeout(timer);
        if (apiKey) {
          resolve({ target: line.slice(READY.length).trim(), apiKey, stop });
        } else {
          child.stdin.end();
          reject(new Error("the gateway launcher printed no admin key"));
        }
      }
    });
  });
}
