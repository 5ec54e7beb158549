-- wrk: POST a ConfigMap never seen before on every request. $PROMFED_BODY holds an
-- AdmissionReview whose rule file has the marker PROMFEDSEQ inside a label value of a rule
-- expression; each request replaces it with a value unique to the thread and request, so
-- promfed's cache always misses and the engine runs every time.
local file = assert(io.open(os.getenv("PROMFED_BODY"), "rb"))
local template = file:read("*a")
file:close()

local threads = 0
function setup(thread)
    threads = threads + 1
    thread:set("id", threads)
end

local counter = 0
function request()
    counter = counter + 1
    local body = template:gsub("PROMFEDSEQ", "t" .. tostring(id) .. "r" .. tostring(counter))
    return wrk.format("POST", nil, { ["Content-Type"] = "application/json" }, body)
end
