-- Observation periods of screened persons: the end date is a date the patient was known alive.
SELECT
    t.observation_period_id AS row_id
    , t.person_id
    , t.observation_period_start_date AS start_date
    , t.observation_period_end_date AS end_date
FROM {cdm}observation_period t
INNER JOIN leopard_person lp ON lp.person_id = t.person_id
