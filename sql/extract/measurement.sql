-- Measurements of screened persons: stage (Cancer Modifier or LOINC stage group with a value),
-- Cancer Modifier metastases (lesions), disease status (LOINC 97509-4 with a coded value).
SELECT
    t.measurement_id AS row_id
    , t.person_id
    , t.measurement_concept_id AS concept_id
    , t.measurement_source_concept_id AS source_concept_id
    , t.measurement_source_value AS source_value
    , t.measurement_date AS start_date
    , t.value_as_concept_id AS value_concept_id
    , vc.vocabulary_id AS value_vocabulary_id
    , vc.concept_code AS value_concept_code
    , t.value_source_value
FROM {cdm}measurement t
INNER JOIN leopard_person lp ON lp.person_id = t.person_id
LEFT JOIN {vocab}concept vc ON vc.concept_id = t.value_as_concept_id
WHERE t.measurement_date >= :since
    AND (
        t.measurement_concept_id IN (SELECT c.concept_id FROM leopard_concept c)
        OR t.measurement_source_concept_id IN (SELECT c.concept_id FROM leopard_concept c)
    )
