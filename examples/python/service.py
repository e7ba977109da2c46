"""A heartbeat service in Python with pika (docs/PROTOCOL.md shows this file).

    pip install pika
    AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f HEARTBEAT_KEY=... \
        python3 service.py billing billing-py-1
"""
import datetime, hashlib, hmac, json, os, random, re, signal, sys, time
import pika

SERVICE = sys.argv[1] if len(sys.argv) > 1 else "billing"
INSTANCE = sys.argv[2] if len(sys.argv) > 2 else "billing-py-1"
URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
# "key", or "key,other" while keys rotate: the first signs, both are accepted.
KEYS = [k.encode() for k in os.environ.get("HEARTBEAT_KEY", "").split(",") if k]
MAC_HEADER = "x-heartbeat-mac"
NAME = re.compile(r"[A-Za-z0-9._-]{1,100}\Z")
QUEUE = f"heartbeat.service.{SERVICE}/{INSTANCE}"
monitors = {}  # reply_to -> (when it last pinged us (monotonic s), its id, that seq)
rejected, last_warning = 0, 0.0


class Stop(Exception):
    pass


def stop(*_):
    raise Stop()


def log(text):
    print(f"{SERVICE}/{INSTANCE}: {text}", file=sys.stderr, flush=True)


def now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


def mac(key, body):
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def signed(body, properties):
    """With a key, only bodies whose MAC one of our keys produced count."""
    if not KEYS:
        return True
    given = (properties.headers or {}).get(MAC_HEADER)
    if isinstance(given, bytes):
        given = given.decode("ascii", "replace")
    if not isinstance(given, str):
        return False
    return any(hmac.compare_digest(mac(k, body), given.lower()) for k in KEYS)


def send(ch, to, message):
    body = json.dumps({"v": 1, **message}, separators=(",", ":")).encode()
    headers = {MAC_HEADER: mac(KEYS[0], body)} if KEYS else None
    props = pika.BasicProperties(content_type="application/json",
                                 delivery_mode=1, headers=headers)
    ch.basic_publish("", to, body, props)


def valid_ping(body, properties):
    if not signed(body, properties):
        return None
    try:
        ping = json.loads(body)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, nested too deep
        return None
    reply_to = properties.reply_to
    if (isinstance(ping, dict) and ping.get("v") == 1 and ping.get("type") == "ping"
            and isinstance(ping.get("monitor"), str) and NAME.match(ping["monitor"])
            and type(ping.get("seq")) is int and ping["seq"] >= 0
            and isinstance(reply_to, str) and reply_to.startswith("heartbeat.monitor.")
            and NAME.match(reply_to[len("heartbeat.monitor."):])):
        return ping
    return None


def on_ping(ch, method, properties, body):
    global rejected, last_warning
    ping = valid_ping(body, properties)
    if ping is None:
        # Dropped and counted, never fatal; logged at most once a second.
        ch.basic_reject(method.delivery_tag, requeue=False)
        rejected += 1
        if time.monotonic() - last_warning >= 1:
            last_warning = time.monotonic()
            log(f"rejected {rejected} bad or unsigned messages so far")
        return
    monitors[properties.reply_to] = (time.monotonic(), ping["monitor"], ping["seq"])
    if len(monitors) > 100:  # remember the most recent monitors only
        del monitors[min(monitors, key=lambda queue: monitors[queue][0])]
    send(ch, properties.reply_to, {"type": "echo", "service": SERVICE, "instance": INSTANCE,
                                   "monitor": ping["monitor"], "seq": ping["seq"], "at": now()})
    ch.basic_ack(method.delivery_tag)


def goodbye(ch):
    for to, (heard, monitor, seq) in monitors.items():
        if time.monotonic() - heard < 600:  # the latest ping it sent us, signed in
            send(ch, to, {"type": "goodbye", "service": SERVICE, "instance": INSTANCE,
                          "monitor": monitor, "seq": seq, "at": now()})


def main():
    if not (NAME.match(SERVICE) and NAME.match(INSTANCE)):
        log("names are 1 to 100 letters, digits, '-', '_' or '.'")
        return 2
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    params = pika.URLParameters(URL)
    params.heartbeat = 10  # a dead network path is noticed within seconds
    params.client_properties = {"connection_name": f"python {SERVICE}/{INSTANCE}"}
    delay = 0.25
    while True:
        connection = ch = None
        try:
            connection = pika.BlockingConnection(params)
            ch = connection.channel()
            ch.exchange_declare("heartbeat.ping", exchange_type="fanout", durable=True)
            ch.queue_declare(QUEUE, exclusive=True, auto_delete=True)
            ch.queue_bind(QUEUE, "heartbeat.ping", routing_key="")
            ch.basic_qos(prefetch_count=2)
            ch.basic_consume(QUEUE, on_ping)
            log(f"connected, {'signed' if KEYS else 'UNSIGNED'}")
            delay = 0.25
            ch.start_consuming()
        except Stop:
            if ch is not None and ch.is_open:
                goodbye(ch)
                connection.close()
            return 0
        except (pika.exceptions.ProbableAuthenticationError,
                pika.exceptions.ProbableAccessDeniedError) as error:
            log(f"the broker refused the login: {error.__class__.__name__}")
            return 1
        except pika.exceptions.AMQPError as error:
            # Lost or refused: back off (exponential, capped, jittered), then
            # reconnect and declare everything again.
            wait = delay / 2 + random.uniform(0, delay / 2)
            log(f"lost the broker ({error.__class__.__name__}); retrying in {wait:.2f}s")
            delay = min(delay * 2, 5.0)
            try:
                time.sleep(wait)
            except Stop:
                return 0


if __name__ == "__main__":
    sys.exit(main())
