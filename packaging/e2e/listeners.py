"""Exit 0 when `firehosectl status --json` (file argv[1]) shows every listener
with its socket from systemd: mqtt and ws always, mqtts and wss when TLS is
on (with TLS off the daemon closes those two)."""
import json
import sys

status = json.load(open(sys.argv[1]))
got = {l["name"]: l["source"] for l in status["listeners"]}
print("    listeners:", got)
ok = all(src == "systemd" for src in got.values()) and {"mqtt", "ws"} <= got.keys()
sys.exit(0 if ok else 1)
