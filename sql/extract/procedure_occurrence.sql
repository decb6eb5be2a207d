-- Procedures of screened persons (radiotherapy, surgery); quantity = number of RT fractions.
-- {procedure_end} is procedure_end_date on v5.4 and a NULL on v5.3, which has no such column.
SELECT
    t.procedure_occurrence_id AS row_id
    , t.person_id
    , t.procedure_concept_id AS concept_id
    , t.procedure_source_concept_id AS source_concept_id
    , t.procedure_source_value AS source_value
    , t.procedure_date AS start_date
    , {procedure_end} AS end_date
    , t.quantity
FROM {cdm}procedure_occurrence t
INNER JOIN leopard_person lp ON lp.person_id = t.person_id
WHERE t.procedure_date >= :since
    AND (
        t.procedure_concept_id IN (SELECT c.concept_id FROM leopard_concept c)
        OR t.procedure_source_concept_id IN (SELECT c.concept_id FROM leopard_concept c)
        OR EXISTS (SELECT 1 FROM leopard_source_code s WHERE t.procedure_source_value LIKE s.pattern)
    )
