-- Observation periods of the screened persons: start and end are dates the patient was known
-- alive (spec §3.12). Read one by one (about one row per person), never in a code group.
SELECT
    {t.id[observation_period_id]} AS row_id
    , lp.person_id
    , lp.known
    , {t.date[observation_period_start_date]} AS start_date
    , {t.date[observation_period_end_date]} AS end_date
    , {t.text[observation_period_start_date]} AS start_raw
FROM {cdm}observation_period t
INNER JOIN leopard_person lp ON lp.person_id = {t.id[person_id]}
