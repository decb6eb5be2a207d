-- Every measurement of the screened persons. candidate: stage (Cancer Modifier or LOINC stage
-- group), Cancer Modifier metastases (lesions), disease status (LOINC 97509-4; its coded value
-- decides in rows.py, so a candidate may still be in no group: then it is an activity record).
SELECT
    {t.id[measurement_id]} AS row_id
    , lp.person_id
    , lp.known
    , {t.id[measurement_concept_id]} AS concept_id
    , {t.id[measurement_source_concept_id]} AS source_concept_id
    , {t.text[measurement_source_value]} AS source_value
    , {t.date[measurement_date]} AS start_date
    , CAST(NULL AS DATE) AS end_date
    , {t.text[measurement_date]} AS start_raw
    , {t.id[value_as_concept_id]} AS value_concept_id
    , {t.text[value_source_value]} AS value_source_value
    , CASE
        WHEN {t.id[measurement_concept_id]} IN (SELECT c.concept_id FROM leopard_concept c)
            OR {t.id[measurement_source_concept_id]} IN (SELECT c.concept_id FROM leopard_concept c)
        THEN 1 ELSE 0
    END AS candidate
FROM {cdm}measurement t
INNER JOIN leopard_person lp ON lp.person_id = {t.id[person_id]}
