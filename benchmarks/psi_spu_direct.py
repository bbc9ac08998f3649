"""The baseline for our `engine: spu`: spu.psi called directly, two parties as two processes on
loopback, on the same ID files, with the link on mutual TLS as ours is (certificates made here).
Used by benchmarks/psi.py; prints one JSON line.

    python benchmarks/psi_spu_direct.py ALICE.parquet BOB.parquet WORKDIR [rr22|kkrt|ecdh]
"""

from __future__ import annotations

import json
import multiprocessing as mp
import resource
import socket
import sys
import time
from pathlib import Path

import pandas as pd

from sharedml.net.certs import init_federation


def party(rank: int, ports: list[int], source: str, folder: str, protocol: str, out: mp.Queue) -> None:
    import spu.psi as psi
    from spu import link

    csv = Path(folder) / f"spu-direct-{rank}.csv"
    pd.read_parquet(source).to_csv(csv, index=False)
    desc = link.Desc()
    for r, port in enumerate(ports):
        desc.add_party(f"p{r}", f"127.0.0.1:{port}")
    certs = Path(folder) / "direct-certs"
    desc.enable_ssl = True
    for options in (desc.client_ssl_opts, desc.server_ssl_opts):
        options.cert.certificate_path = str(certs / f"p{rank}.crt")
        options.cert.private_key_path = str(certs / f"p{rank}.key")
        options.verify.ca_file_path = str(certs / "ca.crt")
        options.verify.verify_depth = 2
    lctx = link.create_brpc(desc, rank)
    kinds = {"rr22": psi.PsiProtocol.PROTOCOL_RR22, "kkrt": psi.PsiProtocol.PROTOCOL_KKRT,
             "ecdh": psi.PsiProtocol.PROTOCOL_ECDH}
    config = psi.PsiExecuteConfig(
        protocol_conf=psi.PsiProtocolConfig(protocol=kinds[protocol], receiver_rank=0, broadcast_result=True),
        input_params=psi.InputParams(path=str(csv), selected_keys=["id"], keys_unique=True),
        output_params=psi.OutputParams(path=str(csv.with_suffix(".out.csv")), disable_alignment=False))
    psi.psi_execute(config, lctx)
    size = sum(1 for _ in open(csv.with_suffix(".out.csv"))) - 1
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out.put((rank, size, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024))
    lctx.stop_link()


def main() -> None:
    alice, bob, folder = sys.argv[1:4]
    protocol = sys.argv[4] if len(sys.argv) > 4 else "rr22"
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    init_federation(["p0", "p1"], Path(folder) / "direct-certs")
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    started = time.perf_counter()
    procs = [ctx.Process(target=party, args=(r, ports, src, folder, protocol, out))
             for r, src in enumerate((alice, bob))]
    for p in procs:
        p.start()
    results = [out.get(timeout=1800) for _ in procs]
    wall = time.perf_counter() - started
    for p in procs:
        p.join(30)
    print(json.dumps({"wall": wall, "cpu": sum(r[2] for r in results), "size": results[0][1],
                      "rss_mb": max(r[3] for r in results), "bytes": float("nan")}))


if __name__ == "__main__":
    main()
