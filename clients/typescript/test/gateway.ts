import { spawn } from "node:child_process";
import * as path from "node:path";
import * as readline from "node:readline";

const READY = "mam-gateway listening on ";

/** A real gateway on a free port, started through clients/testing/start_gateway.py. */
export interface Gateway {
  /** host:port */
  target: string;
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
    readline.createInterface({ input: child.stdout }).on("line", (line) => {
      if (line.startsWith(READY)) {
        clearTimeout(timer);
        resolve({ target: line.slice(READY.length).trim(), stop });
      }
    });
  });
}
