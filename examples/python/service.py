"""A heartbeat service in Python with pika (docs/PROTOCOL.md shows this file).

    pip install pika
    AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f HEARTBEAT_KEY=... \
        python3 service.py billing billing-py-1
    HEARTBEAT_BACK_WITHIN=30 python3 service.py ...   # a planned restart: back within 30 s
    HEARTBEAT_SCOPE_NAME=staging python3 service.py ...    # only monitors run with --scope staging
"""
import datetime, hashlib, hmac, json, os, random, re, signal, sys, time
import urllib.parse
import pika

SERVICE = sys.argv[1] if len(sys.argv) > 1 else "billing"
INSTANCE = sys.argv[2] if len(sys.argv) > 2 else "billing-py-1"
URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
# Seconds: a goodbye that promises a return (a planned restart); 0: a plain goodbye.
BACK_WITHIN = float(os.environ.get("HEARTBEAT_BACK_WITHIN", "0") or 0)
MAC_HEADER = "x-heartbeat-mac"
MAX_BODY = 64 * 1024  # checked first: a bigger body is neither hashed nor parsed
NAME = re.compile(r"[A-Za-z0-9._-]{1,100}\Z")
# The scope (docs/PROTOCOL.md, "Scopes"): unset, empty or "default" keeps the
# names without one; another name prefixes every name with heartbeat:<scope>:.
SCOPE = os.environ.get("HEARTBEAT_SCOPE_NAME") or "default"
if SCOPE != "default" and not re.match(r"[A-Za-z0-9._-]{1,32}\Z", SCOPE):
    sys.exit(f"HEARTBEAT_SCOPE_NAME {SCOPE[:40]!r}: use 1 to 32 letters, digits, '-', '_' or '.'")
PREFIX = "heartbeat." if SCOPE == "default" else f"heartbeat:{SCOPE}:"
EXCHANGE = PREFIX + "ping"
MONITOR_QUEUE = PREFIX + "monitor."
QUEUE = f"{PREFIX}service.{SERVICE}/{INSTANCE}"
REQUIRED = {"ping": ("monitor", "seq"), "echo": ("service", "instance", "seq"),
            "goodbye": ("service", "instance")}
LOCKED_GRACE = 3.0  # our queue held elsewhere this long: another process runs as us
# At most 64 pings wait in our queue, the oldest dropped: a burst of pings
# costs its own duration, not a backlog after it (docs/PROTOCOL.md).
QUEUE_ARGUMENTS = {"x-max-length": 64, "x-max-length-bytes": 262144, "x-overflow": "drop-head"}
MEMORY = 600  # a monitor silent this long is forgotten, freshness and all
# reply_to -> (when it last pinged us (monotonic s), its id, that seq,
#              the highest (boot, seq) taken from it when signed, or None)
monitors = {}
rejected = {}  # reason -> count
last_warning = 0.0


class Stop(Exception):
    pass


def stop(*_):
    raise Stop()


def log(text):
    print(f"{SERVICE}/{INSTANCE}: {text}", file=sys.stderr, flush=True)


def keys_from_env():
    """HEARTBEAT_KEY: "key", or "key,other" while keys rotate (the first signs,
    both are accepted). The bytes between the commas, nothing trimmed."""
    value = os.environ.get("HEARTBEAT_KEY")
    if value is None:
        return []
    keys = [k.encode() for k in value.split(",")]
    if len(keys) > 2 or any(len(k) < 16 for k in keys):
        raise ValueError("HEARTBEAT_KEY holds one or two keys of at least 16 bytes, comma-separated")
    return keys


def now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


def mac(key, body):
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def send(ch, keys, to, message):
    body = json.dumps({"v": 1, **message}, separators=(",", ":")).encode()
    headers = {MAC_HEADER: mac(keys[0], body)} if keys else None
    props = pika.BasicProperties(content_type="application/json",
                                 delivery_mode=1, headers=headers)
    ch.basic_publish("", to, body, props)


def is_name(value):
    return isinstance(value, str) and NAME.match(value) is not None


def is_u64(value):
    return type(value) is int and 0 <= value < 2**64  # not bool, not float


def check_ping(body, properties, keys):
    """The ping, or the reason it is rejected (docs/PROTOCOL.md, "Checking a message")."""
    if len(body) > MAX_BODY:
        return None, "too_large"
    if keys:
        given = (properties.headers or {}).get(MAC_HEADER)
        if isinstance(given, bytes):
            given = given.decode("ascii", "replace")
        if not isinstance(given, str):
            return None, "unsigned"
        if not any(hmac.compare_digest(mac(k, body), given.lower()) for k in keys):
            return None, "bad_signature"
    try:
        ping = json.loads(body)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, nested too deep
        return None, "not_json"
    if not isinstance(ping, dict) or ping.get("type") not in ("ping", "echo", "goodbye"):
        return None, "bad_shape"
    for field in ("monitor", "service", "instance"):  # typed in every message
        if ping.get(field) is not None and not isinstance(ping[field], str):
            return None, "bad_shape"
    for field in ("seq", "boot", "back_within"):
        if ping.get(field) is not None and not is_u64(ping[field]):
            return None, "bad_shape"
    v = ping.get("v")
    if type(v) is not int or not 0 <= v < 2**32:  # missing, "1" or true
        return None, "bad_shape"
    if v != 1:
        return None, "unsupported_version"
    if any(ping.get(field) is None for field in REQUIRED[ping["type"]]):
        return None, "bad_shape"
    names = ("monitor",) if ping["type"] == "ping" else ("service", "instance", "monitor")
    if any(ping.get(field) is not None and not is_name(ping[field]) for field in names):
        return None, "bad_name"
    return ping, None


def fresh(kept, ping):
    """Signed pings only: above the highest (boot, seq) taken from this monitor,
    so a recording played back is never answered (docs/PROTOCOL.md, "Fresh pings")."""
    if kept is None:
        return True
    return ping.get("boot") is not None and (ping["boot"], ping["seq"]) > kept


def on_message(ch, method, properties, body, keys):
    global last_warning
    ping, reason = check_ping(body, properties, keys)
    # Settled once, bad or not, never requeued (docs/PROTOCOL.md).
    ch.basic_ack(method.delivery_tag)
    if reason is not None:
        rejected[reason] = rejected.get(reason, 0) + 1
        if time.monotonic() - last_warning >= 1:  # at most a line a second
            last_warning = time.monotonic()
            log(f"rejected {tally()}")
        return
    reply_to = properties.reply_to
    # Only pings, and only to the queue of the monitor they name: never echo
    # into a queue a stranger names, nor answer a ping copied and readdressed.
    if (ping["type"] != "ping" or not isinstance(reply_to, str)
            or reply_to != MONITOR_QUEUE + ping["monitor"]):
        return
    heard, _, _, kept = monitors.get(reply_to, (0, None, None, None))
    if time.monotonic() - heard >= MEMORY:
        kept = None
    if keys:
        if not fresh(kept, ping):
            return  # played back: not answered
        if ping.get("boot") is not None:
            kept = (ping["boot"], ping["seq"])
    monitors[reply_to] = (time.monotonic(), ping["monitor"], ping["seq"], kept)
    if len(monitors) > 32:  # remember the most recent monitors only
        del monitors[min(monitors, key=lambda queue: monitors[queue][0])]
    send(ch, keys, reply_to, {"type": "echo", "service": SERVICE, "instance": INSTANCE,
                              "monitor": ping["monitor"], "seq": ping["seq"], "at": now()})


def tally():
    return " ".join(f"{reason}={count}" for reason, count in sorted(rejected.items())) or "none"


def goodbye(ch, keys):
    for to, (heard, monitor, seq, _) in monitors.items():
        if time.monotonic() - heard < MEMORY:  # the latest ping it sent us, signed in
            bye = {"type": "goodbye", "service": SERVICE, "instance": INSTANCE,
                   "monitor": monitor, "seq": seq, "at": now()}
            if BACK_WITHIN > 0:
                bye["back_within"] = int(BACK_WITHIN * 1000)  # whole milliseconds
            send(ch, keys, to, bye)


def close(connection):
    """One connection at a time: what is left of the last one goes first."""
    try:
        if connection is not None and connection.is_open:
            connection.close()
    except pika.exceptions.AMQPError:
        pass


def main():
    if not (is_name(SERVICE) and is_name(INSTANCE)):
        log("names are 1 to 100 letters, digits, '-', '_' or '.'")
        return 2
    try:
        keys = keys_from_env()
    except ValueError as error:
        log(str(error))
        return 2
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    params = pika.URLParameters(URL)
    if "heartbeat" not in urllib.parse.parse_qs(urllib.parse.urlsplit(URL).query):
        params.heartbeat = 10  # a dead network path is noticed within seconds
    params.client_properties = {"connection_name": f"python {SERVICE}/{INSTANCE}"}
    delay, locked_since = 0.25, None
    while True:
        connection = ch = None
        try:
            connection = pika.BlockingConnection(params)
            ch = connection.channel()
            ch.exchange_declare(EXCHANGE, exchange_type="fanout", durable=True)
            ch.queue_declare(QUEUE, exclusive=True, auto_delete=True, arguments=QUEUE_ARGUMENTS)
            ch.queue_bind(QUEUE, EXCHANGE, routing_key="")
            ch.basic_qos(prefetch_count=2)
            ch.basic_consume(QUEUE, lambda c, m, p, b: on_message(c, m, p, b, keys))
            log(f"connected, {'signed' if keys else 'UNSIGNED'}")
            delay, locked_since = 0.25, None
            ch.start_consuming()
        except Stop:
            if ch is not None and ch.is_open:
                goodbye(ch, keys)
            close(connection)
            log(f"stopping; rejected {tally()}")
            return 0
        except (pika.exceptions.ProbableAuthenticationError,
                pika.exceptions.ProbableAccessDeniedError) as error:
            log(f"the broker refused the login: {error.__class__.__name__}")
            return 1
        except pika.exceptions.AMQPError as error:
            # The channel is closed, perhaps not the connection: close it before the next.
            close(connection)
            if getattr(error, "reply_code", None) == 403:  # ACCESS_REFUSED: a permission
                log(f"the broker refused: {error}")   # retrying cannot grant it
                return 1
            if getattr(error, "reply_code", None) == 405:  # RESOURCE_LOCKED
                locked_since = locked_since or time.monotonic()
                if time.monotonic() - locked_since >= LOCKED_GRACE:
                    log(f"queue {QUEUE} is held by another connection: "
                        "is another process running as this service and instance?")
                    return 2
            else:
                locked_since = None
            # Back off (exponential, capped, jittered), then reconnect and declare again.
            wait = delay / 2 + random.uniform(0, delay / 2)
            log(f"lost the broker ({error.__class__.__name__}); retrying in {wait:.2f}s")
            delay = min(delay * 2, 5.0)
            try:
                time.sleep(wait)
            except Stop:
                return 0


if __name__ == "__main__":
    sys.exit(main())
