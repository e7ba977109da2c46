#!/usr/bin/env python3
"""A fleet in another process and language, for bench/scale.sh (issue 25).

N services on one pika connection and one channel, each with its own queue
bound to the ping exchange, as docs/PROTOCOL.md says (exclusive, auto-delete,
prefetch 2, manual acks), answering every ping with an echo to its
`reply_to`. Unsigned; nothing else. Runs until SIGINT/SIGTERM.

usage: bench/pika_fleet.py URL NAME COUNT
"""
import datetime
import json
import signal
import sys

import pika

PING_EXCHANGE = "heartbeat.ping"


def main():
    url, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    params = pika.URLParameters(url)
    params.heartbeat = 30
    connection = pika.BlockingConnection(params)
    channel = connection.channel()
    channel.exchange_declare(PING_EXCHANGE, exchange_type="fanout", durable=True)
    channel.basic_qos(prefetch_count=2)
    echo_props = pika.BasicProperties(content_type="application/json", delivery_mode=1)

    def answerer(instance):
        def on_ping(ch, method, props, body):
            try:
                ping = json.loads(body)
            except ValueError:
                ping = None
            if isinstance(ping, dict) and ping.get("type") == "ping" and props.reply_to:
                echo = {
                    "v": 1,
                    "type": "echo",
                    "service": name,
                    "instance": instance,
                    "monitor": ping.get("monitor"),
                    "seq": ping.get("seq"),
                    "at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds"),
                }
                ch.basic_publish("", props.reply_to, json.dumps(echo, separators=(",", ":")), echo_props)
            ch.basic_ack(method.delivery_tag)

        return on_ping

    for i in range(count):
        instance = f"py-{i}"
        queue = f"heartbeat.service.{name}/{instance}"
        channel.queue_declare(queue, exclusive=True, auto_delete=True)
        channel.queue_bind(queue, PING_EXCHANGE)
        channel.basic_consume(queue, answerer(instance))

    def stop(*_):
        channel.stop_consuming()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    print(f"pika fleet: {count} services of {name}", file=sys.stderr, flush=True)
    channel.start_consuming()
    connection.close()


if __name__ == "__main__":
    main()
