"""Pyramid builds and exports on a dask.distributed cluster, as block tasks.

``distributed`` is an optional extra: nothing here is imported by ``import ctstack``, and the
modules import it only inside the functions that talk to a cluster.

- ``plan``: the slab plan and its proof that no two tasks write one file;
- ``tasks``: what runs on a worker (a slab, the top levels, a no-op);
- ``runner``: submit and collect tasks, cancel through a ``distributed.Event``;
- ``ledger``: the resumable build's lock and ledger of finished slabs;
- ``checks``: every worker sees the paths and runs the same ctstack and backend;
- ``build``: the pyramid build (``build_on_cluster``);
- ``export``: exports written by region tasks (``export_on_cluster``);
- ``connect``: the CLI's ``--scheduler`` / ``--workers`` options and client.

See docs/scale-out.md.
"""
