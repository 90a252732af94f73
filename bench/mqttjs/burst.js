'use strict';
// Subscribers of the websocket burst (scenario f), driven by MQTT.js, a
// client library nobody in this project wrote. The Go bench spawns this
// script with one JSON argument, publishes, and reads progress from stdout:
//
//   ready <n>          every client connected and subscribed (SUBACK in)
//   warm               every client received the warm-up message (seq 0)
//   progress <t> <us>  deliveries so far, wall-clock µs of the latest
//   done               every client has every message
//   fail <text>        a client could not connect or subscribe: exit 1
//
// On stdin EOF it writes the report (per client: unique messages,
// duplicates, reorders, the time of its last delivery, and the latency of
// every delivery in µs) to opts.report as JSON, prints "end" and exits.
// Sequence and send time are read at fixed offsets (see bench/payload.go);
// the warm-up message is parsed as JSON to check the payload is an event.

const mqtt = require('mqtt');
const fs = require('fs');
const { performance } = require('perf_hooks');

const opts = JSON.parse(process.argv[2]);
// url, n, filter, qos, msgs, seqOff, sentOff, width, report, idPrefix, parallel

const nowUs = () => Math.round((performance.timeOrigin + performance.now()) * 1000);
const out = (line) => process.stdout.write(line + '\n');

const subs = [];
let total = 0;
let lastUs = 0;
let warm = 0;
let complete = 0;
let finished = false;

function field(payload, off) {
  return Number(payload.toString('latin1', off, off + opts.width).trim());
}

function makeSub(i) {
  const s = {
    i, client: null, n: 0, dups: 0, reorders: 0, lastSeq: 0, lastUs: 0, warm: false,
    seen: new Uint8Array(opts.msgs + 1), lat: [], error: '', granted: -1,
  };
  subs.push(s);
  return new Promise((resolve) => {
    const c = mqtt.connect(opts.url, {
      clientId: `${opts.idPrefix}-${i}`,
      protocolVersion: 4,
      clean: true,
      keepalive: 900,
      reconnectPeriod: 0, // a lost connection is an error, not a retry
      connectTimeout: 30000,
    });
    s.client = c;
    let settled = false;
    const settle = (err) => {
      if (settled) return;
      settled = true;
      if (err) s.error = String(err.message || err);
      resolve();
    };
    c.on('error', (err) => {
      if (!s.error) s.error = String(err.message || err);
      settle(err);
    });
    c.on('close', () => {
      if (!finished && !s.error) s.error = 'connection closed';
      settle(new Error('connection closed before SUBACK'));
    });
    c.on('connect', () => {
      c.subscribe(opts.filter, { qos: opts.qos }, (err, granted) => {
        if (err) return settle(err);
        s.granted = granted && granted[0] ? granted[0].qos : -1;
        if (s.granted === 128) return settle(new Error('subscription refused'));
        settle();
      });
    });
    c.on('message', (topic, payload) => {
      const t = nowUs();
      const seq = field(payload, opts.seqOff);
      if (seq === 0) {
        if (!s.warm) {
          JSON.parse(payload.toString('utf8')); // throws (and fails the run) if not JSON
          s.warm = true;
          if (++warm === opts.n) out('warm');
        }
        return;
      }
      if (!(seq >= 1 && seq <= opts.msgs)) return;
      if (s.seen[seq]) {
        s.dups++;
        return;
      }
      s.seen[seq] = 1;
      if (seq < s.lastSeq) s.reorders++;
      s.lastSeq = seq;
      s.lat.push(t - field(payload, opts.sentOff));
      s.n++;
      s.lastUs = t;
      total++;
      lastUs = t;
      if (s.n === opts.msgs && ++complete === opts.n) out(`progress ${total} ${lastUs}`), out('done');
    });
  });
}

async function main() {
  // Bounded parallelism, like the Go fleet: a connect storm only adds retries.
  let next = 0;
  const worker = async () => {
    while (next < opts.n) {
      const i = next++;
      await makeSub(i);
      if (subs[i] && subs[i].error) throw new Error(`client ${i}: ${subs[i].error}`);
    }
  };
  const workers = [];
  for (let w = 0; w < Math.min(opts.parallel, opts.n); w++) workers.push(worker());
  await Promise.all(workers);
  const granted = [...new Set(subs.map((s) => s.granted))].join(',');
  out(`ready ${subs.length} granted=${granted}`);

  let reported = -1;
  const timer = setInterval(() => {
    if (total !== reported) {
      reported = total;
      out(`progress ${total} ${lastUs}`);
    }
  }, 100);

  process.stdin.resume();
  process.stdin.on('end', () => {
    clearInterval(timer);
    finished = true;
    const report = {
      subs: subs.map((s) => ({
        n: s.n, dups: s.dups, reorders: s.reorders, last_us: s.lastUs, error: s.error, lat_us: s.lat,
      })),
    };
    fs.writeFileSync(opts.report, JSON.stringify(report));
    for (const s of subs) s.client.end(true);
    out('end');
    process.exit(0);
  });
}

main().catch((err) => {
  out(`fail ${String(err.message || err).replace(/\n/g, ' ')}`);
  process.exit(1);
});
