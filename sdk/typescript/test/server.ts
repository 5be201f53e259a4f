// Starts a real sluiced for the suite: SLUICED names the binary, SLUICE_CHDB_LIB libchdb.so.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

export interface Server {
  address: string;
  /** The operator token, which the catalog writes to <data dir>/token on first start. */
  operatorToken: string;
  stop(): Promise<void>;
}

export async function startServer(): Promise<Server> {
  const bin = process.env.SLUICED;
  const lib = process.env.SLUICE_CHDB_LIB;
  if (!bin || !lib) throw new Error("set SLUICED (the sluiced binary) and SLUICE_CHDB_LIB (libchdb.so); `make test-sdk` does");
  const dir = mkdtempSync(join(tmpdir(), "sluice-ts-"));
  const child: ChildProcess = spawn(bin, ["-target=all", "-data-dir", dir, "-grpc-addr", "127.0.0.1:0", "-http-addr", "127.0.0.1:0", "-log-format", "json", "-clickhouse-embedded-lib", lib], { stdio: ["ignore", "ignore", "pipe"] });
  const lines: string[] = [];
  const address = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("sluiced not ready within 2 minutes:\n" + lines.join("\n"))), 120_000);
    createInterface({ input: child.stderr! }).on("line", (line) => {
      if (lines.length < 200) lines.push(line);
      try {
        const rec = JSON.parse(line);
        if (rec.msg === "sluiced ready") {
          clearTimeout(timer);
          resolve(rec.grpc_addr);
        }
      } catch {
        /* not a JSON line */
      }
    });
    child.on("exit", (code) => reject(new Error(`sluiced exited ${code}:\n` + lines.join("\n"))));
  });
  const operatorToken = readFileSync(join(dir, "token"), "utf8").trim();
  return {
    address,
    operatorToken,
    stop: () =>
      new Promise<void>((resolve) => {
        child.once("exit", () => {
          rmSync(dir, { recursive: true, force: true });
          resolve();
        });
        child.kill("SIGINT");
      }),
  };
}
