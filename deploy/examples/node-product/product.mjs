// An external deletion-worker product in Node.js, written from the JSON Schemas alone.
//
//   AMQP_URL=amqp://guest:guest@127.0.0.1:5672/ DELETION_PREFIX=deletion PRODUCT=crm node product.mjs
//
// Consumes <prefix>.product.<product>, validates each task against
// schemas/json/product-task.schema.json, deletes the identities (here: from an in-memory
// map), publishes an acknowledgement valid against product-ack.schema.json to
// <prefix>.acks on a confirm channel, and acks the task only once the broker has
// confirmed the acknowledgement. An invalid task goes to <queue>.dead with the reason
// in the `x-deletion-error` header. SIGTERM/SIGINT: stop consuming, finish the tasks in
// hand, close, exit 0. A lost connection exits 1: let the supervisor restart it (the
// broker gives every unacked task back).

import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import Ajv from "ajv";
import amqp from "amqplib";

const here = dirname(fileURLToPath(import.meta.url));
const schemasDir = process.env.SCHEMAS_DIR ?? join(here, "..", "..", "..", "schemas", "json");
const amqpUrl = process.env.AMQP_URL ?? "amqp://guest:guest@127.0.0.1:5672/";
const prefix = process.env.DELETION_PREFIX ?? "deletion";
const product = process.env.PRODUCT ?? "crm";
const prefetch = Number(process.env.PREFETCH ?? "16"); // tasks are at most 4 MiB: 64 MiB held at most

const queue = `${prefix}.product.${product}`;
const acksQueue = `${prefix}.acks`;

const ajv = new Ajv({ allErrors: false, strict: false });
const loadSchema = (name) => ajv.compile(JSON.parse(readFileSync(join(schemasDir, name), "utf8")));
const validTask = loadSchema("product-task.schema.json");
const validAck = loadSchema("product-ack.schema.json");

// The product's data: identity "namespace:value" -> a record. Seeded so deletes find something.
const store = new Map([["email:alice@example.com", { plan: "pro" }]]);

function log(event, fields = {}) {
  // One JSON line per event; identity values are never logged.
  console.log(JSON.stringify({ event, product, ...fields }));
}

function schemaReason(errors) {
  // Where and what, never the offending value (it may be an identity).
  const [first] = errors ?? [];
  return first ? `schema: ${first.instancePath || "message"}: ${first.message}` : "schema: invalid";
}

// A dry run (`task.dryRun`) only counts: what would be deleted goes in `deleted`.
// A product that fails some identities only answers `status: "failed"` with
// `failedIdentities: [{ namespace: { code }, id, error }]`: the rest count as deleted,
// and `deletion-worker jobs retry` later sends only those identities again.
function deleteItem(item, dryRun) {
  let deleted = 0;
  let notFound = 0;
  for (const identity of item.identities) {
    const key = `${identity.namespace.code}:${identity.id}`;
    const found = dryRun ? store.has(key) : store.delete(key);
    if (found) deleted += 1;
    else notFound += 1;
  }
  // `deleted`/`notFound` are extra fields: the ack schema allows them and older readers skip them.
  return { jobId: item.jobId, status: "success", error: null, deleted, notFound };
}

async function main() {
  const connection = await amqp.connect(amqpUrl, { clientProperties: { connection_name: `node product ${product}` } });
  const publisher = await connection.createConfirmChannel();
  const consumer = await connection.createChannel();
  let stopping = false;
  const inHand = new Set();

  connection.on("close", () => {
    if (!stopping) {
      log("broker_connection_lost");
      process.exit(1);
    }
  });
  connection.on("error", (error) => log("broker_error", { error: String(error.message ?? error) }));

  await consumer.checkQueue(queue); // the service declares the topology: fail fast if it has not
  await consumer.prefetch(prefetch);

  // Publish and wait for the broker's confirm: the task is acked only after this resolves.
  const publishConfirmed = (routingKey, body, options) =>
    new Promise((resolve, reject) => {
      publisher.sendToQueue(routingKey, body, { persistent: true, contentType: "application/json", ...options }, (error) =>
        error ? reject(error) : resolve(),
      );
    });

  async function settle(message) {
    let task;
    try {
      task = JSON.parse(message.content.toString("utf8"));
    } catch {
      return deadLetter(message, "json: body is not valid JSON");
    }
    if (!validTask(task)) return deadLetter(message, schemaReason(validTask.errors));
    if (task.product !== product) return deadLetter(message, `wrong product: task for '${task.product}' on this queue`);

    const ack = { taskId: task.taskId, product, results: task.items.map((item) => deleteItem(item, task.dryRun === true)) };
    if (!validAck(ack)) throw new Error(`our own acknowledgement is invalid: ${schemaReason(validAck.errors)}`);
    // The task's W3C trace context, passed on as it came: with no tracing library of its
    // own, the product still keeps the request's trace going (the acks role links it).
    const received = message.properties.headers ?? {};
    const headers = Object.fromEntries(
      ["traceparent", "tracestate"].filter((name) => typeof received[name] === "string").map((name) => [name, received[name]]),
    );
    await publishConfirmed(acksQueue, Buffer.from(JSON.stringify(ack)), { messageId: task.taskId, headers });
    consumer.ack(message);
    log("task_acknowledged", { taskId: task.taskId, items: task.items.length });
  }

  async function deadLetter(message, reason) {
    const headers = {
      ...(message.properties.headers ?? {}),
      "x-deletion-error": reason,
      "x-deletion-origin-queue": queue,
      "x-deletion-dead-at": Date.now(),
    };
    delete headers["x-delivery-count"];
    await publishConfirmed(`${queue}.dead`, message.content, { headers, messageId: message.properties.messageId });
    consumer.ack(message);
    log("task_dead_lettered", { reason });
  }

  const { consumerTag } = await consumer.consume(queue, (message) => {
    if (message === null) return; // the broker cancelled the consumer (queue deleted)
    const work = settle(message).catch((error) => {
      // Not settled: give it back rather than hold it until the consumer timeout.
      log("task_settle_failed", { error: String(error.message ?? error) });
      consumer.nack(message, false, true);
    });
    inHand.add(work);
    work.finally(() => inHand.delete(work));
  });
  log("product_consuming", { queue, prefetch });

  async function stop(signal) {
    if (stopping) return;
    stopping = true;
    log("product_stopping", { signal, inHand: inHand.size });
    await consumer.cancel(consumerTag);
    // Deliveries sent before the broker saw the cancel join `inHand` meanwhile: wait for those too.
    while (inHand.size > 0) await Promise.allSettled([...inHand]);
    await connection.close();
    log("product_stopped", { signal });
    process.exit(0);
  }
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
}

main().catch((error) => {
  log("product_failed", { error: String(error.message ?? error) });
  process.exit(1);
});
