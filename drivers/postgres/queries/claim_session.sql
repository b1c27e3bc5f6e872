-- Runs first in the claim's transaction. It steers the claim's plan to the
-- ordered scan of the pending index: on a table without statistics (fresh,
-- or not yet analyzed) the planner otherwise sorts every pending row, which
-- costs a full scan of the backlog and one key lock try per pending row on
-- each claim (TestClaimPlan checks the plan).
SET LOCAL enable_sort = off
