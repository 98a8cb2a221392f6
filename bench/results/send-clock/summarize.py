"""Medians per load and generator of a send-clock A/B (BENCHMARKS.md, "The send clock").

Usage: python3 summarize.py RUNS.jsonl, where each label is "GENERATOR MODE RATE rROUND".
"""
import json,sys,statistics as st,collections
rows=collections.defaultdict(list)
for l in open(sys.argv[1]):
    r=json.loads(l); w,m,rate,_=r['label'].split(); rows[(m,int(rate),w)].append(r)
print("| load | generator | answered msg/s | p50 ms | p99 ms | p99.9 ms | server us/msg | bench CPU % of a core |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
for (m,rate,w),rs in sorted(rows.items()):
    med=lambda f: st.median(f(r) for r in rs)
    print(f"| {m} {rate:,} msg/s | {w} | {med(lambda r:r['throughput']):,.0f} | {med(lambda r:r['latency_us']['p50'])/1000:.2f} | {med(lambda r:r['latency_us']['p99'])/1000:.2f} | {med(lambda r:r['latency_us']['p999'])/1000:.2f} | {med(lambda r:r['server_cpu_us_per_msg']):.1f} | {med(lambda r:r['bench_cpu_s']/r['duration_s']*100):.0f} |")
