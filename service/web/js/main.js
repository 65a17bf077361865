// mlplab dashboard: plain JavaScript modules, no build step, no CDN. Every figure comes from the API.
import { forgetToken, heldToken, onTokenChange } from "./api.js";
import { $ } from "./dom.js";
import { reload, route, start } from "./router.js";
import { comparePage } from "./pages/compare.js";
import { datasetsPage } from "./pages/datasets.js";
import { disagreementsPage } from "./pages/disagreements.js";
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
route("/compare/disagreements", "compare", disagreementsPage);
route("/datasets", "datasets", datasetsPage);

// "forget token", shown while this tab holds the API's token; forgetting it shows the page without it.
const forget = $("#forget-token");
const showForget = () => { forget.hidden = !heldToken(); };
forget.addEventListener("click", () => { forgetToken(); reload(); });
onTokenChange(showForget);
showForget();

start($("#view"));
