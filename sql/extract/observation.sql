-- Every observation of the screened persons. candidate: stage group or disease status concepts
-- (with a coded or text value, read in rows.py).
SELECT
    {t.id[observation_id]} AS row_id
    , lp.person_id
    , lp.known
    , {t.id[observation_concept_id]} AS concept_id
    , {t.id[observation_source_concept_id]} AS source_concept_id
    , {t.text[observation_source_value]} AS source_value
    , {t.date[observation_date]} AS start_date
    , CAST(NULL AS DATE) AS end_date
    , {t.text[observation_date]} AS start_raw
    , {t.id[value_as_concept_id]} AS value_concept_id
    , {t.text[value_as_string]} AS value_as_string
    , CASE
        WHEN {t.id[observation_concept_id]} IN (SELECT c.concept_id FROM leopard_concept c)
            OR {t.id[observation_source_concept_id]} IN (SELECT c.concept_id FROM leopard_concept c)
        THEN 1 ELSE 0
    END AS candidate
FROM {cdm}observation t
INNER JOIN leopard_person lp ON lp.person_id = {t.id[person_id]}
