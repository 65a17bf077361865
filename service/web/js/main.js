// mlplab dashboard: plain JavaScript modules, no build step, no CDN. Every figure comes from the API.
import { $ } from "./dom.js";
import { route, start } from "./router.js";
import { comparePage } from "./pages/compare.js";
import { datasetsPage } from "./pages/datasets.js";
import { jobPage } from "./pages/job.js";
import { jobsPage } from "./pages/jobs.js";
import { modelPage } from "./pages/model.js";
import { studyPage } from "./pages/study.js";
import { sweepPage } from "./pages/sweep.js";

route("/", "jobs", jobsPage);
route("/jobs", "jobs", jobsPage);
route("/jobs/:id", "jobs", jobPage);
route("/models/:model", "jobs", modelPage);
route("/sweeps/:hex", "jobs", sweepPage);
route("/studies/:id", "jobs", studyPage);
route("/compare", "compare", comparePage);
route("/datasets", "datasets", datasetsPage);

start($("#view"));
