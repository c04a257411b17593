SET DECIMAL=DOT.
SET FORMAT=F40.16.
OUTPUT MODIFY /SELECT TABLES /TABLECELLS SELECT = [ SIGNIFICANCE RESIDUAL PERCENT ] FORMAT = F40.16.
GET DATA /TYPE=TXT /FILE='paper_table2_cohort.csv' /ENCODING='UTF-8'
  /ARRANGEMENT=DELIMITED /DELCASE=LINE /FIRSTCASE=2 /DELIMITERS=","
  /VARIABLES= patient_id A16
   residual_lbp F8.0
   sex_male F8.0
   diabetes F8.0
   hypertension F8.0
   smoking F8.0
   alcohol F8.0
   trauma_severity A16
   fascia_injury F8.0
   fracture_level A16
   cement_diffused F8.0
   age F40.16
   bmi F40.16
   vbq F40.16
   kyphosis_pre F40.16
   kyphosis_post F40.16
   kyphosis_last F40.16
   cement_volume F40.16
   ps_total_area F40.16
   ps_muscle_area F40.16
   ps_fi_pct F40.16
   esmf_total_area F40.16
   esmf_muscle_area F40.16
   esmf_fi_pct F40.16
   vas_pre F40.16
   vas_post F40.16
   vas_last F40.16
   ps_total_area_obs1 F40.16
   ps_total_area_obs2 F40.16
   ps_muscle_area_obs1 F40.16
   ps_muscle_area_obs2 F40.16
   ps_fi_pct_obs1 F40.16
   ps_fi_pct_obs2 F40.16
   esmf_total_area_obs1 F40.16
   esmf_total_area_obs2 F40.16
   esmf_muscle_area_obs1 F40.16
   esmf_muscle_area_obs2 F40.16
   esmf_fi_pct_obs1 F40.16
   esmf_fi_pct_obs2 F40.16.
T-TEST GROUPS=residual_lbp(0 1) /VARIABLES=age bmi vbq kyphosis_pre kyphosis_post kyphosis_last cement_volume ps_total_area ps_muscle_area ps_fi_pct esmf_total_area esmf_muscle_area esmf_fi_pct vas_pre vas_post vas_last.
CROSSTABS /TABLES=sex_male diabetes hypertension smoking alcohol trauma_severity fascia_injury fracture_level cement_diffused BY residual_lbp /STATISTICS=CHISQ /CELLS=COUNT EXPECTED.
NPAR TESTS /M-W= age bmi vbq kyphosis_pre kyphosis_post kyphosis_last cement_volume ps_total_area ps_muscle_area ps_fi_pct esmf_total_area esmf_muscle_area esmf_fi_pct vas_pre vas_post vas_last BY residual_lbp(0 1).
EXAMINE VARIABLES=age esmf_fi_pct kyphosis_post BY residual_lbp
  /PERCENTILES(25 50 75)=HAVERAGE /STATISTICS=NONE /PLOT=NONE.
LOGISTIC REGRESSION residual_lbp WITH fascia_injury vbq kyphosis_post cement_diffused ps_muscle_area ps_total_area esmf_fi_pct /PRINT=CI(95).
ROC ps_total_area esmf_fi_pct BY residual_lbp(1) /PRINT=SE COORDINATES /PLOT=NONE.
ROC ps_total_area BY residual_lbp(1) /PRINT=SE /CRITERIA=TESTPOS(SMALL) /PLOT=NONE.
