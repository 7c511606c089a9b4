/** bench/plan.ts withColumns: what `bun bench/run.ts --mtu LIST` keeps of the plan. */
import { expect, test } from "bun:test";
import { allRows, STARTUP_ROW, withColumns } from "../../bench/plan.ts";

test("--mtu keeps the listed columns of each row and drops rows left with none", () => {
  const rows = withColumns(allRows(false), [1500]);
  const tput = rows.find((r) => r.table === "passt-tcp" && r.row === "TCP throughput over IPv4: host to guest");
  expect(tput?.columns).toEqual([1500]);
  // latency rows are measured at the largest MTU only: none left at 1500 for passt
  expect(rows.some((r) => r.table === "passt-tcp" && r.kind === "rr")).toBe(false);
  // the vhost-user table has one column, 1500: all of it stays
  expect(rows.filter((r) => r.table === "passt-vu-tcp").length).toBe(allRows(false).filter((r) => r.table === "passt-vu-tcp").length);
  expect(rows.some((r) => r.row === STARTUP_ROW)).toBe(true);
});

test("two columns, in the plan's order", () => {
  const rows = withColumns(allRows(false), [65520, 4000]);
  const tput = rows.find((r) => r.table === "pasta-tap-udp" && r.row === "UDP throughput over IPv6: ns to host");
  expect(tput?.columns).toEqual([4000, 65520]);
});
