"""A separate loading process for crash and lock tests (run as a script, never collected).

usage: warehouse_loader.py URL SCHEMA ACTION VARIANT [PAUSE_POINT]

ACTION ``load`` stores events and replaces the derived tables of the dataset
``VARIANT``; when the loader reaches ``PAUSE_POINT`` it prints ``PAUSED <point>`` and
sleeps, so the test can SIGKILL it there. ``hold`` takes the run lock, prints
``LOCKED`` and sleeps. ``try-lock`` exits with the code of the error it gets.
"""

from __future__ import annotations

import sys
import time

from warehouse_frames import derived_tables, events_frame, patients_frame

from leopard_etl.errors import LeopardError
from leopard_etl.warehouse import Warehouse

NUMBERS = list(range(1, 41))


def main(argv: list[str]) -> int:
    url, schema, action, variant = argv[0], argv[1], argv[2], int(argv[3])
    pause = argv[4] if len(argv) > 4 else None

    def checkpoint(point: str) -> None:
        if point == pause:
            print(f"PAUSED {point}", flush=True)
            time.sleep(120)

    wh = Warehouse(url, schema, checkpoint=checkpoint)
    try:
        if action == "hold":
            with wh.lock():
                print("LOCKED", flush=True)
                time.sleep(120)
            return 0
        with wh.lock():
            if action == "try-lock":
                return 0
            wh.migrate()
            run_id = wh.begin_run("synthetic", "fhir", "full")
            wh.upsert_events(
                events_frame(NUMBERS, variant), patients_frame(NUMBERS, variant), run_id=run_id, full=True
            )
            wh.replace_derived(derived_tables(NUMBERS, variant))
            wh.end_run(run_id, "ok", {"read": 1}, watermark=f"v{variant}")
        print("DONE", flush=True)
        return 0
    except LeopardError as err:
        print(f"{type(err).__name__}: {err}", flush=True)
        return err.exit_code
    finally:
        wh.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
