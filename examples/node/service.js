// A heartbeat service in Node.js with amqplib, written from docs/PROTOCOL.md alone.
//
//     npm ci
//     AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f HEARTBEAT_KEY=... \
//         node service.js billing billing-node-1
//     HEARTBEAT_SCOPE_NAME=staging node service.js ...   # only monitors run with --scope staging
//
// It signs when HEARTBEAT_KEY is set, checks every delivery as the page says
// (size, signature, JSON, shape, version, fields), counts what it rejects by
// reason, answers only pings addressed to their own monitor's queue and,
// signed, only fresh ones (never a recording played back), says goodbye on
// SIGINT or SIGTERM, and after a lost connection closes what is left of it,
// backs off (exponential, capped, jittered) and declares everything again.
'use strict';

const crypto = require('node:crypto');
const amqp = require('amqplib');

const SERVICE = process.argv[2] || 'billing';
const INSTANCE = process.argv[3] || 'billing-node-1';
const URL_TEXT = process.env.AMQP_URL || 'amqp://guest:guest@127.0.0.1:5672/%2f';
// The scope (docs/PROTOCOL.md, "Scopes"): unset, empty or "default" keeps the
// names without one; another name prefixes every name with heartbeat:<scope>:.
const SCOPE = process.env.HEARTBEAT_SCOPE_NAME || 'default';
if (SCOPE !== 'default' && !/^[A-Za-z0-9._-]{1,32}$/.test(SCOPE)) {
  process.stderr.write(`HEARTBEAT_SCOPE_NAME ${JSON.stringify(SCOPE.slice(0, 40))}: use 1 to 32 letters, digits, '-', '_' or '.'\n`);
  process.exit(1);
}
const PREFIX = SCOPE === 'default' ? 'heartbeat.' : `heartbeat:${SCOPE}:`;
const EXCHANGE = `${PREFIX}ping`;
const QUEUE = `${PREFIX}service.${SERVICE}/${INSTANCE}`;
const MONITOR_QUEUE = `${PREFIX}monitor.`;
const MAC_HEADER = 'x-heartbeat-mac';
const MAX_BODY = 64 * 1024; // checked first: a bigger body is neither hashed nor parsed
const NAME = /^[A-Za-z0-9._-]{1,100}$/;
const REQUIRED = { ping: ['monitor', 'seq'], echo: ['service', 'instance', 'seq'], goodbye: ['service', 'instance'] };
const LOCKED_GRACE_MS = 3000; // our queue held elsewhere this long: another process runs as us
// At most 64 pings wait in our queue, the oldest dropped: a burst of pings
// costs its own duration, not a backlog after it.
const QUEUE_ARGUMENTS = { 'x-max-length': 64, 'x-max-length-bytes': 262144, 'x-overflow': 'drop-head' };
const MEMORY_MS = 600_000; // a monitor silent this long is forgotten, freshness and all

// reply_to -> { heard (ms), monitor, seq, kept }: the latest ping from each,
// and (signed) the highest [boot, seq] taken from it, or null.
const monitors = new Map();
const rejected = new Map(); // reason -> count
let lastWarning = 0;
let stopping = false;

function log(text) {
  process.stderr.write(`${SERVICE}/${INSTANCE}: ${text}\n`);
}

function isName(value) {
  return typeof value === 'string' && NAME.test(value);
}

// HEARTBEAT_KEY: "key", or "key,other" while keys rotate (the first signs,
// both are accepted). The bytes between the commas, nothing trimmed.
function keysFromEnv() {
  const value = process.env.HEARTBEAT_KEY;
  if (value === undefined) return [];
  const keys = value.split(',').map((key) => Buffer.from(key, 'utf8'));
  if (keys.length > 2 || keys.some((key) => key.length < 16)) {
    throw new Error('HEARTBEAT_KEY holds one or two keys of at least 16 bytes, comma-separated');
  }
  return keys;
}

function mac(key, body) {
  return crypto.createHmac('sha256', key).update(body).digest('hex');
}

function sameMac(expected, given) {
  const a = Buffer.from(expected, 'ascii');
  const b = Buffer.from(given.toLowerCase(), 'ascii');
  return a.length === b.length && crypto.timingSafeEqual(a, b);
}

// The ping, or the reason the delivery is rejected ("Checking a message").
function check(msg, keys) {
  const body = msg.content;
  if (body.length > MAX_BODY) return { reason: 'too_large' };
  if (keys.length > 0) {
    let given = (msg.properties.headers || {})[MAC_HEADER];
    if (Buffer.isBuffer(given)) given = given.toString('ascii');
    if (typeof given !== 'string') return { reason: 'unsigned' };
    if (!keys.some((key) => sameMac(mac(key, body), given))) return { reason: 'bad_signature' };
  }
  let message;
  try {
    message = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(body));
  } catch {
    return { reason: 'not_json' };
  }
  if (message === null || typeof message !== 'object' || Array.isArray(message)) return { reason: 'bad_shape' };
  if (!['ping', 'echo', 'goodbye'].includes(message.type)) return { reason: 'bad_shape' };
  for (const field of ['monitor', 'service', 'instance']) {
    if (message[field] != null && typeof message[field] !== 'string') return { reason: 'bad_shape' };
  }
  // JSON.parse reads every number as a double: integers past 2^53 lose
  // their last digits, so such a seq is echoed as what it is not. Monitors
  // count from 1; no real one gets there.
  // A boot is a Unix time in milliseconds, far below 2^53.
  for (const field of ['seq', 'boot', 'back_within']) {
    if (message[field] != null && !(Number.isSafeInteger(message[field]) && message[field] >= 0)) return { reason: 'bad_shape' };
  }
  if (!(Number.isInteger(message.v) && message.v >= 0 && message.v < 2 ** 32)) return { reason: 'bad_shape' };
  if (message.v !== 1) return { reason: 'unsupported_version' };
  if (REQUIRED[message.type].some((field) => message[field] == null)) return { reason: 'bad_shape' };
  const names = message.type === 'ping' ? ['monitor'] : ['service', 'instance', 'monitor'];
  if (names.some((field) => message[field] != null && !isName(message[field]))) return { reason: 'bad_name' };
  return { message };
}

function tally() {
  const counts = [...rejected.entries()].sort(([a], [b]) => (a < b ? -1 : 1));
  return counts.map(([reason, count]) => `${reason}=${count}`).join(' ') || 'none';
}

function send(channel, keys, to, message) {
  const body = Buffer.from(JSON.stringify({ v: 1, ...message }), 'utf8');
  const headers = keys.length > 0 ? { [MAC_HEADER]: mac(keys[0], body) } : undefined;
  channel.publish('', to, body, { contentType: 'application/json', deliveryMode: 1, headers });
}

// Signed pings only: above the highest [boot, seq] taken from this monitor,
// so a recording played back is never answered ("Fresh pings").
function fresh(kept, message) {
  if (kept === null) return true;
  if (message.boot == null) return false;
  const [boot, seq] = kept;
  return message.boot > boot || (message.boot === boot && message.seq > seq);
}

function onDelivery(channel, keys, msg) {
  if (msg === null) return; // the broker cancelled the consumer; the close handler reconnects
  const { message, reason } = check(msg, keys);
  channel.ack(msg); // settled once, bad or not, never requeued
  if (reason) {
    rejected.set(reason, (rejected.get(reason) || 0) + 1);
    if (Date.now() - lastWarning >= 1000) { // at most a line a second
      lastWarning = Date.now();
      log(`rejected ${tally()}`);
    }
    return;
  }
  const replyTo = msg.properties.replyTo;
  // Only pings, and only to the queue of the monitor they name: never echo
  // into a queue a stranger names, nor answer a ping copied and readdressed.
  if (stopping || message.type !== 'ping' || replyTo !== MONITOR_QUEUE + message.monitor) {
    return;
  }
  const known = monitors.get(replyTo);
  let kept = known && Date.now() - known.heard < MEMORY_MS ? known.kept : null;
  if (keys.length > 0) {
    if (!fresh(kept, message)) return; // played back: not answered
    if (message.boot != null) kept = [message.boot, message.seq];
  }
  monitors.delete(replyTo); // most recent last
  monitors.set(replyTo, { heard: Date.now(), monitor: message.monitor, seq: message.seq, kept });
  if (monitors.size > 32) monitors.delete(monitors.keys().next().value);
  send(channel, keys, replyTo, {
    type: 'echo', service: SERVICE, instance: INSTANCE,
    monitor: message.monitor, seq: message.seq, at: new Date().toISOString(),
  });
}

function goodbye(channel, keys) {
  for (const [to, { heard, monitor, seq }] of monitors) {
    if (Date.now() - heard < MEMORY_MS) {
      send(channel, keys, to, {
        type: 'goodbye', service: SERVICE, instance: INSTANCE, monitor, seq, at: new Date().toISOString(),
      });
    }
  }
}

// The URL's own ?heartbeat= wins; otherwise 10 s, so a dead path shows within seconds.
function withHeartbeat(text) {
  const query = text.includes('?') ? text.slice(text.indexOf('?') + 1).split('#')[0] : '';
  if (new URLSearchParams(query).has('heartbeat')) return text;
  const [base, fragment] = text.split('#');
  return `${base}${base.includes('?') ? '&' : '?'}heartbeat=10${fragment === undefined ? '' : `#${fragment}`}`;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// One connection: declare, consume, and resolve with why it ended.
async function serve(url, keys, stop) {
  let connection;
  try {
    connection = await amqp.connect(url, { clientProperties: { connection_name: `node ${SERVICE}/${INSTANCE}` } });
  } catch (error) {
    return { error };
  }
  const ended = new Promise((resolve) => {
    connection.on('error', () => {}); // 'close' follows, with the error
    connection.on('close', (error) => resolve({ error: error || new Error('connection closed') }));
  });
  try {
    const channel = await connection.createChannel();
    channel.on('error', () => {}); // a channel error closes the channel; handled below
    channel.on('close', () => { if (!stopping) connection.close().catch(() => {}); });
    await channel.assertExchange(EXCHANGE, 'fanout', { durable: true, autoDelete: false });
    await channel.assertQueue(QUEUE, { exclusive: true, autoDelete: true, durable: false, arguments: QUEUE_ARGUMENTS });
    await channel.bindQueue(QUEUE, EXCHANGE, '');
    await channel.prefetch(2);
    await channel.consume(QUEUE, (msg) => onDelivery(channel, keys, msg), { noAck: false });
    log(`connected, ${keys.length > 0 ? 'signed' : 'UNSIGNED'}`);
    const outcome = await Promise.race([ended, stop.then(() => ({ stop: true }))]);
    if (outcome.stop) {
      goodbye(channel, keys);
      await channel.close(); // its close-ok comes after the broker took the goodbyes
      await connection.close();
      return { stopped: true, connected: true };
    }
    return { ...outcome, connected: true };
  } catch (error) {
    // The channel is closed, perhaps not the connection: close it before the next.
    await connection.close().catch(() => {});
    return { error };
  }
}

async function main() {
  if (!isName(SERVICE) || !isName(INSTANCE)) {
    log("names are 1 to 100 letters, digits, '-', '_' or '.'");
    return 2;
  }
  let keys;
  try {
    keys = keysFromEnv();
  } catch (error) {
    log(error.message);
    return 2;
  }
  let signalled;
  const stop = new Promise((resolve) => { signalled = resolve; });
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.on(signal, () => { stopping = true; signalled(); });
  }
  const url = withHeartbeat(URL_TEXT);
  let delay = 250;
  let lockedSince = null;
  while (!stopping) {
    const outcome = await serve(url, keys, stop);
    if (outcome.stopped) break;
    if (outcome.connected) {
      delay = 250;
      lockedSince = null;
    }
    if (stopping) break;
    const error = outcome.error;
    const text = String(error && error.message);
    if (/ACCESS_REFUSED|ACCESS-REFUSED|403/.test(text)) {
      log(`the broker refused: ${text}`);
      return 1;
    }
    if (error && error.code === 405) { // RESOURCE_LOCKED
      lockedSince = lockedSince || Date.now();
      if (Date.now() - lockedSince >= LOCKED_GRACE_MS) {
        log(`queue ${QUEUE} is held by another connection: is another process running as this service and instance?`);
        return 2;
      }
    } else {
      lockedSince = null;
    }
    const wait = delay / 2 + Math.random() * (delay / 2);
    log(`lost the broker (${text.split('\n')[0]}); retrying in ${(wait / 1000).toFixed(2)}s`);
    delay = Math.min(delay * 2, 5000);
    await Promise.race([sleep(wait), stop]);
  }
  log(`stopping; rejected ${tally()}`);
  return 0;
}

main().then((code) => process.exit(code), (error) => {
  log(`failed: ${error && error.stack}`);
  process.exit(1);
});
