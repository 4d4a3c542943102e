// A second, independent implementation of brokerkit's Redis wire format
// (docs/wire-format.md), in JavaScript with ioredis: it produces and consumes on the
// keys and channels brokerkit uses, as a program in another language would.
//
//   node peer.mjs ACTION 'JSON ARGUMENTS'
//
// Actions (bytes travel as base64 in the JSON):
//   list-produce   {port, key, messages: [Message]}           LPUSH each (in order)
//   list-consume   {port, key, count}                         RPOP count, decode each
//   stream-produce {port, key, messages: [Message], form}     XADD bk1/body ("lines"|"json"|"raw")
//   stream-consume {port, key, group, count}                  XREADGROUP from the start, XACK
//   pubsub-publish {port, channel, messages: [Message]}       PUBLISH each
//   pubsub-listen  {port, channel, count}                     SUBSCRIBE, print "ready", then count
//   vectors        {path}                                     decode and re-encode the test vectors
// A Message is {id, content_type, published_at, headers, payload_b64} or {raw_b64}.
// Output: one JSON line, {"messages": [...]} with each decoded message.

import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import Redis from "ioredis";

const MAGIC = Buffer.from("BK1");
const SHORT = {
  "application/octet-stream": "bin",
  "application/json": "json",
  "text/plain; charset=utf-8": "text",
  "application/msgpack": "msgpack",
};
const LONG = Object.fromEntries(Object.entries(SHORT).map(([k, v]) => [v, k]));

function headerJson(m) {
  const header = { id: m.id, ct: m.content_type, ts: m.published_at };
  if (m.headers && Object.keys(m.headers).length) header.h = m.headers;
  return JSON.stringify(header);
}

// A list element or pub/sub message: BK1 + JSON header + "\n" + payload.
export function encodeEnvelope(m) {
  if (m.raw_b64 !== undefined) return Buffer.from(m.raw_b64, "base64");
  const payload = Buffer.from(m.payload_b64, "base64");
  return Buffer.concat([MAGIC, Buffer.from(headerJson(m)), Buffer.from("\n"), payload]);
}

function guess(data) {
  let text;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(data);
  } catch {
    return "application/octet-stream";
  }
  try {
    JSON.parse(text);
    return "application/json";
  } catch {
    return "text/plain; charset=utf-8";
  }
}

function rawMessage(data) {
  const digest = createHash("sha1").update(data).digest("hex").slice(0, 24);
  return { id: `raw-${digest}`, content_type: guess(data), published_at: 0, headers: {}, payload: data };
}

// How deeply a header nests (the header object is one level): at most 32 (wire-format.md).
function depth(v) {
  if (typeof v !== "object" || v === null) return 0;
  let deepest = 0;
  for (const item of Object.values(v)) deepest = Math.max(deepest, depth(item));
  return 1 + deepest;
}

function wellFormed(h) {
  if (typeof h !== "object" || h === null || Array.isArray(h)) return false;
  if (typeof h.id !== "string" || h.id === "") return false;
  if (h.ct !== undefined && typeof h.ct !== "string") return false;
  if (h.ts !== undefined && !(typeof h.ts === "number" && Number.isFinite(h.ts))) return false;
  if (depth(h) > 32) return false;
  if (h.h !== undefined && h.h !== null) {
    if (typeof h.h !== "object" || Array.isArray(h.h)) return false;
    if (!Object.values(h.h).every((v) => typeof v === "string")) return false;
  }
  return true;
}

// The message in a list element or pub/sub message; a handed-back element
// (BKR<n>\n<element>) reports n deliveries before.
export function decodeEnvelope(value) {
  let data = value;
  let deliveries = 0;
  if (data.subarray(0, 3).toString() === "BKR") {
    const nl = data.indexOf(10, 3);
    const n = Number(data.subarray(3, nl).toString());
    if (nl !== -1 && Number.isInteger(n)) {
      deliveries = n;
      data = data.subarray(nl + 1);
    }
  }
  let message = null;
  if (data.subarray(0, 3).equals(MAGIC)) {
    const nl = data.indexOf(10, 3);
    if (nl !== -1) {
      try {
        const h = JSON.parse(data.subarray(3, nl).toString("utf-8"));
        if (wellFormed(h)) {
          message = {
            id: h.id,
            content_type: h.ct ?? "application/octet-stream",
            published_at: Number(h.ts ?? 0),
            headers: h.h ?? {},
            payload: data.subarray(nl + 1),
          };
        }
      } catch {
        message = null;
      }
    }
  }
  return { ...(message ?? rawMessage(data)), deliveries };
}

// The stream fields of a message: bk1 (one line each: id, content type, time,
// headers as JSON when there are any) and body.
export function encodeFields(m, form) {
  const payload = Buffer.from(m.payload_b64 ?? m.raw_b64, "base64");
  if (form === "raw") return ["body", payload];
  if (form === "json" || !m.content_type.includes("/") || /\n/.test(m.id + m.content_type)) {
    return ["bk1", JSON.stringify({ id: m.id, ct: m.content_type, ts: m.published_at, h: m.headers ?? {} }), "body", payload];
  }
  let header = `${m.id}\n${SHORT[m.content_type] ?? m.content_type}\n${m.published_at}`;
  if (m.headers && Object.keys(m.headers).length) header += `\n${JSON.stringify(m.headers)}`;
  return ["bk1", header, "body", payload];
}

export function decodeFields(flat) {
  const fields = new Map();
  for (let i = 0; i < flat.length; i += 2) fields.set(flat[i].toString(), flat[i + 1]);
  const header = fields.get("bk1");
  const body = fields.get("body");
  if (header !== undefined && body !== undefined) {
    const text = header.toString("utf-8");
    if (text.startsWith("{")) {
      const h = JSON.parse(text);
      return { id: h.id, content_type: h.ct, published_at: Number(h.ts), headers: h.h ?? {}, payload: body };
    }
    const lines = text.split("\n");
    const ct = LONG[lines[1]] ?? lines[1];
    const headers = lines.length === 4 ? JSON.parse(lines[3]) : {};
    return { id: lines[0], content_type: ct, published_at: Number(lines[2]), headers, payload: body };
  }
  if (body !== undefined && fields.size === 1) return rawMessage(body);
  throw new Error(`entry with fields ${[...fields.keys()]}: not decoded by this peer`);
}

function shown(m) {
  const { payload, ...rest } = m;
  return { ...rest, payload_b64: Buffer.from(payload).toString("base64") };
}

function client(port) {
  return new Redis({ host: "127.0.0.1", port, lazyConnect: false, maxRetriesPerRequest: 3 });
}

async function main() {
  const [action, json] = process.argv.slice(2);
  const args = JSON.parse(json ?? "{}");
  const out = [];
  if (action === "vectors") {
    const vectors = JSON.parse(readFileSync(args.path, "utf-8"));
    for (const c of vectors.messages) {
      const fromEnvelope = decodeEnvelope(Buffer.from(c.envelope_b64, "base64"));
      const f = c.stream_fields_b64;
      const fromFields = decodeFields(["bk1", Buffer.from(f.bk1, "base64"), "body", Buffer.from(f.body, "base64")]);
      out.push({
        name: c.name,
        envelope: shown(fromEnvelope),
        fields: shown(fromFields),
        reencoded_envelope_b64: encodeEnvelope(c.message).toString("base64"),
        reencoded_bk1_b64: Buffer.from(encodeFields(c.message, "lines")[1]).toString("base64"),
      });
    }
    for (const c of vectors.raw_elements) {
      out.push({ name: c.name, envelope: shown(decodeEnvelope(Buffer.from(c.envelope_b64, "base64"))) });
    }
    console.log(JSON.stringify({ messages: out }));
    return;
  }
  const redis = client(args.port);
  try {
    if (action === "list-produce") {
      for (const m of args.messages) await redis.lpush(args.key, encodeEnvelope(m));
    } else if (action === "list-consume") {
      for (let i = 0; i < args.count; i++) {
        const value = await redis.rpopBuffer(args.key);
        if (value === null) break;
        out.push(shown(decodeEnvelope(value)));
      }
    } else if (action === "stream-produce") {
      for (const m of args.messages) await redis.xadd(args.key, "*", ...encodeFields(m, args.form));
    } else if (action === "stream-consume") {
      await redis.xgroup("CREATE", args.key, args.group, "0", "MKSTREAM").catch(() => {});
      const reply = await redis.xreadgroupBuffer("GROUP", args.group, "node-1", "COUNT", args.count, "STREAMS", args.key, ">");
      for (const [, entries] of reply ?? []) {
        for (const [id, flat] of entries) {
          out.push(shown(decodeFields(flat)));
          await redis.xack(args.key, args.group, id);
        }
      }
    } else if (action === "pubsub-publish") {
      for (const m of args.messages) out.push({ receivers: await redis.publish(args.channel, encodeEnvelope(m)) });
    } else if (action === "pubsub-listen") {
      await new Promise((resolve) => {
        redis.on("messageBuffer", (_channel, value) => {
          out.push(shown(decodeEnvelope(value)));
          if (out.length >= args.count) resolve();
        });
        redis.subscribe(args.channel).then(() => console.log("ready"));
      });
    } else {
      throw new Error(`unknown action ${action}`);
    }
  } finally {
    redis.disconnect();
  }
  console.log(JSON.stringify({ messages: out }));
}

main().catch((error) => {
  console.error(`peer: ${error.message}`);
  process.exit(1);
});
