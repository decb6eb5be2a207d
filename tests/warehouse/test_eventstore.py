"""Event store: which patients changed, deletions, and re-loading events for derivation."""

from __future__ import annotations

import pandas as pd
from warehouse_checks import rows
from warehouse_frames import events_frame, patients_frame, pid

from leopard_etl.warehouse import Warehouse
from leopard_etl.warehouse.schema import DERIVED_TABLES

#: a derivation that yields no rows (the derived load then only clears the patients' pending mark)
NOTHING = {name: pd.DataFrame() for name in DERIVED_TABLES}


def _iso(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for col in ("start", "end"):
        out[col] = out[col].map(lambda d: d.isoformat() if d is not None else None)
    return out


def test_changed_patients_and_deletions(wh_target: tuple[str, str]) -> None:
    nums = list(range(1, 7))
    ev, pt = events_frame(nums), patients_frame(nums)
    with Warehouse(*wh_target) as wh:
        wh.migrate()
        assert wh.upsert_events(ev, pt, run_id="r1", full=True) == {pid(n) for n in nums}
        stored, patients = wh.load_events()
        assert rows(stored, "source_event") == rows(ev, "source_event")
        assert rows(patients, "source_patient") == rows(pt, "source_patient")
        assert isinstance(stored.loc[0, "start"], type(ev.loc[0, "start"]))

        # Same content with dates as ISO strings: nothing changed (the hash is over typed values).
        wh.replace_derived(NOTHING, patient_ids={pid(n) for n in nums})
        assert wh.upsert_events(_iso(ev), pt, run_id="r2", full=True) == set()

        # Incremental: patient 2's RT dose corrected, patient 3's lesion entered-in-error,
        # patient 4's chemo record re-assigned to patient 5.
        rt2 = ev[ev["source"] == f"fhir:Procedure/rt-{pid(2)}"].assign(dose_cgy=180.0)
        moved = ev[ev["source"] == f"fhir:MedicationAdministration/cis-{pid(4)}"].assign(patient_id=pid(5))
        changed = wh.upsert_events(
            pd.concat([rt2, moved]), pt.iloc[0:0], run_id="r3", deleted=[f"fhir:Condition/les-{pid(3)}"]
        )
        assert changed == {pid(2), pid(3), pid(4), pid(5)}
        stored, _ = wh.load_events()
        assert len(stored) == 4 * len(nums) - 1
        assert f"fhir:Condition/les-{pid(3)}" not in set(stored["source"])
        by_source = stored.set_index("source")
        assert by_source.loc[f"fhir:Procedure/rt-{pid(2)}", "dose_cgy"] == 180.0
        assert by_source.loc[f"fhir:MedicationAdministration/cis-{pid(4)}", "patient_id"] == pid(5)

        # Pending patients come back until their derived rows are replaced.
        assert wh.upsert_events(ev.iloc[0:0], pt.iloc[0:0], run_id="r4") == {pid(2), pid(3), pid(4), pid(5)}
        wh.replace_derived(NOTHING, patient_ids={pid(2), pid(3), pid(4), pid(5)})

        # Full read without patient 6: its records are gone; a deleted Patient takes its events along.
        keep = [n for n in nums if n != 6]
        current, _ = wh.load_events()
        current = current[current["patient_id"] != pid(6)]
        assert wh.upsert_events(current, patients_frame(keep), run_id="r5", full=True) == {pid(6)}
        assert all(len(f) == 0 for f in wh.load_events([pid(6)]))
        wh.replace_derived(NOTHING, patient_ids={pid(6)})
        assert wh.upsert_events(
            ev.iloc[0:0], pt.iloc[0:0], run_id="r6", deleted=[f"fhir:Patient/{pid(1)}"]
        ) == {pid(1)}
        only = wh.load_events([pid(1), pid(2)])
        assert set(only[0]["patient_id"]) == {pid(2)} and list(only[1]["patient_id"]) == [pid(2)]
