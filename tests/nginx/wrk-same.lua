-- wrk: POST the same AdmissionReview (file $PROMFED_BODY) on every request: what kapp and
-- helm do when they re-apply an unchanged ConfigMap. promfed answers from its cache.
local file = assert(io.open(os.getenv("PROMFED_BODY"), "rb"))
wrk.method = "POST"
wrk.body = file:read("*a")
wrk.headers["Content-Type"] = "application/json"
file:close()
