"""Compile a MOF file with pywbem's MOF compiler, the peer of cimvirt's benchmark.

Usage: python pywbem_compile.py ROOT.mof RUNS
Prints one line per run: "<seconds> <classes> <qualifier declarations>".
"""
import os
import sys
import time

from pywbem_mock import FakedWBEMConnection


def main():
    root, runs = sys.argv[1], int(sys.argv[2])
    for _ in range(runs):
        conn = FakedWBEMConnection()
        start = time.perf_counter()
        conn.compile_mof_file(root, namespace="root/cimv2", search_paths=[os.path.dirname(root)], verbose=False)
        elapsed = time.perf_counter() - start
        classes = len(conn.EnumerateClassNames(namespace="root/cimv2", DeepInheritance=True))
        qualifiers = len(conn.EnumerateQualifiers(namespace="root/cimv2"))
        print(f"{elapsed:.4f} {classes} {qualifiers}", flush=True)


if __name__ == "__main__":
    main()
