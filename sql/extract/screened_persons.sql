-- Persons screened for LEOPARD: at least one condition whose standard concept, source
-- concept or ICD-10-CM source value is in the nsclc group (spec §3.6, first step).
-- {cdm} is the validated, quoted CDM schema prefix ("cdm". or empty); values are bound.
INSERT INTO leopard_person (person_id)
SELECT DISTINCT co.person_id
FROM {cdm}condition_occurrence co
WHERE co.condition_concept_id IN (SELECT c.concept_id FROM leopard_concept c WHERE c.nsclc = 1)
    OR co.condition_source_concept_id IN (SELECT c.concept_id FROM leopard_concept c WHERE c.nsclc = 1)
    OR EXISTS (
        SELECT 1 FROM leopard_source_code s
        WHERE s.nsclc = 1 AND co.condition_source_value LIKE s.pattern
    )
