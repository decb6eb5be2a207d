-- Visits of the screened persons (optional table, spec §1 v2): activity records only, never
-- in a code group (candidate = 0), so they only ever leave the database aggregated (activity.sql).
SELECT
    {t.id[visit_occurrence_id]} AS row_id
    , lp.person_id
    , lp.known
    , {t.id[visit_concept_id]} AS concept_id
    , {t.id[visit_source_concept_id]} AS source_concept_id
    , {t.text[visit_source_value]} AS source_value
    , {t.date[visit_start_date]} AS start_date
    , {t.date[visit_end_date]} AS end_date
    , {t.text[visit_start_date]} AS start_raw
    , 0 AS candidate
FROM {cdm}visit_occurrence t
INNER JOIN leopard_person lp ON lp.person_id = {t.id[person_id]}
