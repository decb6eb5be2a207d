-- Device exposures of the screened persons (optional table, spec §1 v2): activity records only, never
-- in a code group (candidate = 0), so they only ever leave the database aggregated (activity.sql).
SELECT
    {t.id[device_exposure_id]} AS row_id
    , lp.person_id
    , lp.known
    , {t.id[device_concept_id]} AS concept_id
    , {t.id[device_source_concept_id]} AS source_concept_id
    , {t.text[device_source_value]} AS source_value
    , {t.date[device_exposure_start_date]} AS start_date
    , {t.date[device_exposure_end_date]} AS end_date
    , {t.text[device_exposure_start_date]} AS start_raw
    , 0 AS candidate
FROM {cdm}device_exposure t
INNER JOIN leopard_person lp ON lp.person_id = {t.id[person_id]}
