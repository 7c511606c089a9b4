import { expect, test } from "bun:test";
import { namespaceHostname } from "../../src/ns/ns.ts";

test("a namespace pasta creates is named -H NAME, else pasta- and the host's name, cut at 64 characters", () => {
  expect(namespaceHostname("guest1", "box")).toBe("guest1");
  expect(namespaceHostname("", "box")).toBe("pasta-box");
  expect(namespaceHostname("", "b".repeat(70))).toBe(`pasta-${"b".repeat(58)}`);
  expect(namespaceHostname("g".repeat(64), "box")).toBe("g".repeat(64));
  expect(namespaceHostname("g".repeat(65), "box")).toBe("");
});
