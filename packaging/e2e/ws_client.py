"""MQTT over websockets for the end-to-end test, with paho-mqtt 1.6 (a client
nobody here wrote). mosquitto_sub/pub have no websocket transport.

  ws_client.py sub CLIENT_ID FILTER              prints "subscribed", then "topic payload" lines
  ws_client.py pub CLIENT_ID TOPIC PAYLOAD USER PASSWORD   exits 0 once the broker acknowledged (QoS 1)
"""
import sys
import paho.mqtt.client as mqtt

HOST, PORT, PATH = "127.0.0.1", 80, "/mqtt"


def client(client_id):
    c = mqtt.Client(client_id=client_id, transport="websockets")
    c.ws_set_options(path=PATH)
    return c


def sub(client_id, topic):
    c = client(client_id)
    c.on_connect = lambda c, u, f, rc: c.subscribe(topic) if rc == 0 else sys.exit("connect: rc %d" % rc)
    c.on_subscribe = lambda c, u, mid, qos: print("subscribed", flush=True)
    c.on_message = lambda c, u, m: print(m.topic, m.payload.decode(), flush=True)
    c.connect(HOST, PORT, keepalive=30)
    c.loop_forever()


def pub(client_id, topic, payload, user, password):
    c = client(client_id)
    c.username_pw_set(user, password)
    c.connect(HOST, PORT, keepalive=30)
    c.loop_start()
    info = c.publish(topic, payload, qos=1)
    info.wait_for_publish(timeout=10)
    ok = info.is_published()
    c.disconnect()
    c.loop_stop()
    sys.exit(0 if ok else "publish not acknowledged")


if __name__ == "__main__":
    {"sub": sub, "pub": pub}[sys.argv[1]](*sys.argv[2:])
