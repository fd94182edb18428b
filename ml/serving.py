"""`tweetops serve`: the prediction API, always answering with the registry's current champion.

The API loads `models:/<name>@champion` from the MLflow registry and nothing else, through
ml.model_access (the one module that resolves, loads and contract-checks models): at start it
resolves the alias to a version and loads that exact version; a background poller re-reads the
alias every --poll-seconds and, when it moved, loads the new version completely (and checks it
answers a warm-up tweet) before swapping one reference. A request takes the reference once, so
requests in flight finish on the model they started with and no request fails during a swap.

Endpoints: POST /predict (one tweet or a batch), GET /health, GET /model (version, metrics,
lineage), GET /metrics (Prometheus). Bad input gets a 4xx naming what is wrong; until the
registry has a champion, /predict and /health answer 503 and say so. When --max-queue requests
already wait for the model, /predict answers 503 with Retry-After at once (backpressure, not an
ever-growing queue); a model that fails on a request answers a JSON 500 naming the served version,
counted in /metrics as tweetops_model_errors_total.
"""
# No `from __future__ import annotations`: FastAPI must see the request models built in create_app.
import argparse
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from ml import model_access
from ml.contract import CHAMPION, LABELS
from ml.model_access import ContractError, LoadedModel, NoChampionError, predict_arrays
from ml.registry import UntrustedModelError
from tweetops.core.settings import Settings, host_port, load_settings

log = logging.getLogger("tweetops.serving")

API_TITLE = "TweetOps sentiment API"
EXAMPLE_TWEET = model_access.WARM_UP_TWEET


@dataclass(frozen=True)
class ServingConfig:
    """Limits and timing of the API; `tweetops serve` sets them from its flags."""
    poll_seconds: float = 10.0        # how often the champion alias is re-read
    max_batch: int = 256              # tweets per POST /predict batch
    max_body_bytes: int = 1_000_000   # request body limit (413 above it)
    max_text_chars: int = 5_000       # characters per tweet text (a tweet has at most 280)
    max_queue: int = 128              # /predict requests waiting for the model (503 above it)

    def __post_init__(self):
        problems = [f"{name} must be positive (got {getattr(self, name)!r})"
                    for name in ("poll_seconds", "max_batch", "max_body_bytes", "max_text_chars", "max_queue")
                    if not getattr(self, name) > 0]
        if problems:
            raise ValueError("invalid serving configuration: " + "; ".join(problems))


# --- the served champion -----------------------------------------------------------------------

class QueueFull(RuntimeError):
    """`max_queue` requests already wait for the model: the client should retry later (503)."""


class ModelFailed(RuntimeError):
    """The served model raised (or broke the contract) on a request; names the version (500)."""

    def __init__(self, served: LoadedModel, error: BaseException):
        super().__init__(f"{served.name} version {served.version} failed on this request: "
                         f"{type(error).__name__}: {str(error)[:300]}")
        self.served = served


class ChampionWatcher:
    """Holds the served champion and swaps in a new version when the alias moves.

    `current` is replaced by a single assignment after the new model is fully loaded, so a
    reader always sees a complete model: either the old one or the new one.
    """

    def __init__(self, settings: Settings, poll_seconds: float, on_swap=None, on_failure=None, alias: str = CHAMPION):
        self.settings, self.alias = settings, alias
        self.poll_seconds = poll_seconds
        self.current: LoadedModel | None = None
        self.last_problem: str | None = None
        self._on_swap = on_swap or (lambda served: None)
        self._on_failure = on_failure or (lambda: None)
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._first_attempt = threading.Event()
        self._refused: str | None = None  # a version that broke the contract at load time
        self._thread: threading.Thread | None = None

    def refresh(self) -> bool:
        """Serve the version the champion alias points at now; True if it changed."""
        with self._refresh_lock:
            name = self.settings.model_name
            try:
                version = model_access.resolve(self.settings, self.alias)
            except NoChampionError as exc:
                self.last_problem = str(exc)
                return False
            if self.current is not None and self.current.version == str(version.version):
                return False
            if self._refused == str(version.version):  # broken: not reloaded every poll
                return False
            try:
                served = model_access.load(self.settings, version)
            except (ContractError, UntrustedModelError):
                self._refused = str(version.version)
                raise
            previous, self.current = self.current, served
            self.last_problem = None
            log.info("serving %s version %s (was %s)", name, served.version, previous.version if previous else "none")
            self._on_swap(served)
            return True

    def refresh_safely(self) -> None:
        """One poll: a registry outage or a broken new version keeps the current model serving."""
        try:
            self.refresh()
        except Exception as exc:
            self._on_failure()
            self.last_problem = f"could not load the champion of {self.settings.model_name!r}: {exc}"
            log.warning("%s; still serving version %s", self.last_problem,
                        self.current.version if self.current else "none")

    def start(self, wait_seconds: float = 120.0) -> None:
        """Start polling; wait (bounded) for the first attempt so a healthy registry means a ready API."""
        self._thread = threading.Thread(target=self._poll, name=f"{self.alias}-watcher", daemon=True)
        self._thread.start()
        self._first_attempt.wait(wait_seconds)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _poll(self) -> None:
        self.refresh_safely()
        self._first_attempt.set()
        while not self._stop.wait(self.poll_seconds):
            self.refresh_safely()


class ModelRunner:
    """One thread runs the served model; requests that arrive while it is busy go into one model call.

    A model call costs far more per call than per tweet (a transformer most of all), and on a few
    cores parallel calls only fight over them: so calls are serialised and batched. At low load a
    request runs alone, at once; under load the queue turns into batches of up to `max_tweets`.
    Each batch is answered by the champion taken once for it, and names that version.
    """

    def __init__(self, watcher: ChampionWatcher, max_tweets: int, max_queue: int = ServingConfig.max_queue):
        import queue

        self.watcher, self.max_tweets, self.max_queue = watcher, max_tweets, max_queue
        self.waiting = 0  # requests in the queue, not yet taken into a model call
        self._waiting_lock = threading.Lock()
        self._queue: "queue.SimpleQueue" = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="model-runner", daemon=True)
        self._thread.start()

    async def predict(self, texts: list[str], timing: dict | None = None) -> tuple[LoadedModel, list[str], Any]:
        """(the model version that answered, labels, probabilities); NoChampionError if none is loaded,
        QueueFull if `max_queue` requests already wait, ModelFailed if the model raised.
        `timing`, if given, receives perf_counter() stamps: queued, model_start, model_end."""
        import asyncio

        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._waiting_lock:
            if self.waiting >= self.max_queue:
                raise QueueFull(f"{self.waiting} requests already wait for the model (--max-queue "
                                f"{self.max_queue}); retry shortly")
            self.waiting += 1
        if timing is not None:
            timing["queued"] = time.perf_counter()
        self._queue.put((texts, future, loop, timing))
        return await future

    def _taken(self) -> None:
        with self._waiting_lock:
            self.waiting -= 1

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        import queue

        try:  # sklearn re-checks every call's parameters and inputs (~20% of a baseline call); ours are
            import sklearn  # our own pipeline's. Its config is per thread: this is the thread that predicts.

            sklearn.set_config(assume_finite=True, skip_parameter_validation=True)
        except ImportError:
            pass
        while True:
            job = self._queue.get()
            if job is None:
                return
            self._taken()
            jobs, size = [job], len(job[0])
            while size < self.max_tweets:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    self._queue.put(None)  # stop after answering this batch
                    break
                self._taken()
                jobs.append(job)
                size += len(job[0])
            self._answer(jobs)

    def _answer(self, jobs: list) -> None:
        served = self.watcher.current  # taken once: the whole batch uses this version
        if served is None:
            return self._settle(jobs, error=NoChampionError(self.watcher.last_problem or "loading the champion"))
        texts = [text for job in jobs for text in job[0]]
        started = time.perf_counter()
        try:
            labels, probabilities = predict_arrays(served.model, texts)
        except Exception as exc:
            if len(jobs) > 1:  # one request's tweets must not fail the others: retry each alone
                for job in jobs:
                    self._answer([job])
                return
            log.error("%s version %s failed on a request: %r", served.name, served.version, exc)
            return self._settle(jobs, error=ModelFailed(served, exc))
        ended = time.perf_counter()
        start = 0
        for texts_, future, loop, timing in jobs:
            if timing is not None:
                timing["model_start"], timing["model_end"] = started, ended
            end = start + len(texts_)
            loop.call_soon_threadsafe(_resolve, future, (served, labels[start:end], probabilities[start:end]), None)
            start = end

    @staticmethod
    def _settle(jobs: list, error: BaseException) -> None:
        for _, future, loop, _ in jobs:
            loop.call_soon_threadsafe(_resolve, future, None, error)


def _resolve(future, result, error) -> None:
    if future.cancelled():  # the client went away
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


# --- the HTTP API --------------------------------------------------------------------------------

def create_app(settings: Settings | None = None, config: ServingConfig | None = None, rollout_config=None):
    """The FastAPI app; the champion watcher starts and stops with the app's lifespan.
    `rollout_config` (ml.shadow.RolloutConfig) turns on shadow and canary serving of the challenger."""
    from contextlib import asynccontextmanager
    from typing import Annotated, Literal, Union

    from fastapi import Body, FastAPI, HTTPException, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
    from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag
    from starlette.exceptions import HTTPException as StarletteHTTPException

    settings = settings or load_settings()
    config = config or ServingConfig()

    # Prometheus series live in the app's own registry, so several apps (tests) never collide.
    metrics_registry = CollectorRegistry()
    requests_total = Counter("tweetops_api_requests", "HTTP requests by endpoint, method and status",
                             ["endpoint", "method", "status"], registry=metrics_registry)
    latency = Histogram("tweetops_api_request_seconds", "Request latency by endpoint", ["endpoint"],
                        buckets=(.001, .002, .003, .005, .0075, .01, .015, .02, .03, .05, .1, .2, .5, 1, 2, 5),
                        registry=metrics_registry)
    predictions_total = Counter("tweetops_predictions", "Predictions by label and model version",
                                ["label", "model_version"], registry=metrics_registry)
    batch_size = Histogram("tweetops_predict_batch_size", "Tweets per /predict request",
                           buckets=(1, 2, 8, 32, 64, 128, 256, 512, 1024), registry=metrics_registry)
    served_version = Gauge("tweetops_model_version", "Registry version of the served champion (0: none)",
                           registry=metrics_registry)
    swaps_total = Counter("tweetops_model_swaps", "Champion versions swapped in", registry=metrics_registry)
    refresh_failures = Counter("tweetops_model_refresh_failures",
                               "Champion polls that failed (registry down, broken version)", registry=metrics_registry)
    model_errors = Counter("tweetops_model_errors", "Requests the served model failed on (answered 500)",
                           ["model_version"], registry=metrics_registry)
    queue_rejections = Counter("tweetops_predict_queue_full",
                               "Requests refused with 503 because --max-queue requests already waited",
                               registry=metrics_registry)
    queue_waiting = Gauge("tweetops_predict_queue_waiting", "/predict requests waiting for the model now",
                          registry=metrics_registry)
    stage_seconds = Histogram(
        "tweetops_predict_stage_seconds",
        "Where an answered /predict request's time went: " + "; ".join(f"{k}: {v}" for k, v in STAGES.items()),
        ["stage"], buckets=(.0001, .00025, .0005, .001, .002, .003, .005, .01, .02, .05, .1, .5, 1),
        registry=metrics_registry)

    from ml.drift_metrics import DriftScoreGauge

    drift_scores = DriftScoreGauge(settings, metrics_registry)

    def on_swap(served: LoadedModel) -> None:
        swaps_total.inc()
        served_version.set(float(served.version) if served.version.isdigit() else 0)

    watcher = ChampionWatcher(settings, config.poll_seconds, on_swap=on_swap, on_failure=refresh_failures.inc)
    runner: list[ModelRunner] = []  # started with the app (lifespan), so a bare app holds no thread
    queue_waiting.set_function(lambda: runner[0].waiting if runner else 0)
    rollout = None
    if rollout_config is not None and rollout_config.enabled:
        from ml.shadow import Rollout

        rollout = Rollout(settings, rollout_config, watcher, metrics_registry, config)

    # -- request and response models (limits come from the config) --
    Text = Annotated[str, Field(
        min_length=1, max_length=config.max_text_chars, pattern=r"\S",
        description=f"The tweet's raw text (1 to {config.max_text_chars} characters, not only whitespace); "
                    "the model normalises it itself.",
        examples=[EXAMPLE_TWEET])]
    TweetId = Annotated[str | None, Field(
        min_length=1, max_length=200,
        description="Your id for the tweet, echoed back in the prediction.", examples=["1234567890"])]

    class Tweet(BaseModel):
        """One tweet to classify."""
        model_config = ConfigDict(extra="forbid", title="Tweet",
                                  json_schema_extra={"examples": [{"text": EXAMPLE_TWEET}]})
        text: Text
        id: TweetId = None
        label: Literal[LABELS] | None = Field(None, description="The true sentiment, if known: measures the "
                                               "live quality of champion and challenger (shadow serving).")
        explain: bool = Field(False, description="Also say which n-grams pushed the label (ml/explain.py).")

    class TweetBatch(BaseModel):
        """Several tweets classified in one request, by one model version."""
        model_config = ConfigDict(extra="forbid", title="TweetBatch", json_schema_extra={"examples": [
            {"tweets": [{"id": "1", "text": EXAMPLE_TWEET}, {"id": "2", "text": "my flight is delayed again"}]}]})
        tweets: list[Tweet] = Field(min_length=1, max_length=config.max_batch,
                                    description=f"1 to {config.max_batch} tweets.")
        explain: bool = Field(False, description="Explain every tweet of the batch.")

    def request_kind(body: Any) -> str | None:
        if isinstance(body, dict):
            return "batch" if "tweets" in body else "tweet"
        if isinstance(body, BaseModel):
            return "batch" if isinstance(body, TweetBatch) else "tweet"
        return None

    PredictRequest = Annotated[
        Union[Annotated[Tweet, Tag("tweet")], Annotated[TweetBatch, Tag("batch")]],
        Discriminator(request_kind, custom_error_type="invalid_request",
                      custom_error_message='expected a JSON object (Content-Type: application/json): '
                                           '{"text": "..."} for one tweet or {"tweets": [{"text": "..."}]} '
                                           'for a batch')]

    class Probabilities(BaseModel):
        negative: float = Field(ge=0, le=1)
        neutral: float = Field(ge=0, le=1)
        positive: float = Field(ge=0, le=1)

    class Contribution(BaseModel):
        feature: str = Field(description="The n-gram (linear) or word (occlusion).")
        kind: str = Field(description="word, char or char_wb n-gram.")
        value: float = Field(description="Its TF-IDF value in this tweet (1 for occlusion).")
        contribution: float = Field(description="How far it pushed the label's score (negative: away from it).")

    class WordShare(BaseModel):
        word: str
        contribution: float

    class Explanation(BaseModel):
        label: str
        method: Literal["linear", "occlusion"]
        unit: str = Field(description="What contributions add up to.")
        intercept: float | None
        decision: float = Field(description="intercept + every contribution (linear); the label's probability (occlusion).")
        towards: list[Contribution]
        away: list[Contribution]
        other: float = Field(description="Sum of the contributions not listed.")
        words: list[WordShare] = Field(description="Each word of the normalised tweet and its share, in order.")
        unattributed: float | None = Field(description="Linear: contributions no word could be given (normally 0).")

    class Prediction(BaseModel):
        id: str | None = Field(None, description="The id sent with the tweet, if any.")
        label: Literal[LABELS] = Field(description="The most likely sentiment.")
        probabilities: Probabilities = Field(description="Probability of each sentiment; they sum to 1.")
        explanation: Explanation | None = Field(None, description="Only when `explain` was asked for.")

    class TweetPrediction(Prediction):
        model_name: str = Field(description="The registered model that answered.")
        model_version: str = Field(description="Its registry version (the champion when it answered).")

    class BatchPrediction(BaseModel):
        model_name: str
        model_version: str
        predictions: list[Prediction] = Field(description="One prediction per tweet, in request order.")

    class Problem(BaseModel):
        detail: str = Field(description="What is wrong and what to do.")

    class ModelProblem(BaseModel):
        detail: str = Field(description="What failed: the model version and its error.")
        model_name: str
        model_version: str = Field(description="The served version that failed.")

    class InputProblem(BaseModel):
        message: str = Field(description="Every problem in one line: where it is and what is wrong.")
        detail: list[dict] = Field(description="Each problem: loc (where), msg (what), type.")

    class Health(BaseModel):
        status: Literal["ok", "no_champion"]
        model_name: str
        model_version: str | None
        detail: str | None = None

    class ModelInfo(BaseModel):
        name: str
        version: str
        aliases: list[str]
        run_id: str | None
        model_id: str | None
        registered_at: str | None
        loaded_at: str
        load_seconds: float
        metrics: dict[str, float] = Field(description="The training run's metrics (e.g. test_macro_f1).")
        lineage: dict[str, str | None] = Field(description="Lineage tags: git commit, config, features version.")

    @asynccontextmanager
    async def lifespan(app):
        import anyio

        await anyio.to_thread.run_sync(watcher.start)
        runner.append(ModelRunner(watcher, max_tweets=config.max_batch, max_queue=config.max_queue))
        if rollout is not None:
            await anyio.to_thread.run_sync(rollout.start)
        try:
            yield
        finally:
            if rollout is not None:
                await anyio.to_thread.run_sync(rollout.stop)
            await anyio.to_thread.run_sync(runner.pop().stop)
            await anyio.to_thread.run_sync(watcher.stop)

    app = FastAPI(
        title=API_TITLE,
        version="1.0",
        description=(
            f"Sentiment of tweets (negative, neutral, positive) by the champion of the registered model "
            f"`{settings.model_name}` in MLflow. A new champion is picked up within "
            f"{config.poll_seconds:g} s, without a restart and without failing a request."),
        lifespan=lifespan,
        openapi_tags=[
            {"name": "predictions", "description": "Sentiment of one tweet or a batch, by the served champion."},
            {"name": "operations", "description": "Health, the served model version, Prometheus metrics."},
        ],
    )
    app.state.watcher = watcher
    app.state.config = config

    no_champion = {503: {"model": Problem, "description": "No champion is registered (or loaded) yet."}}

    def no_model() -> HTTPException:
        return HTTPException(503, detail=f"no model to serve: {watcher.last_problem or 'loading the champion'}; "
                                         f"the API polls the registry every {config.poll_seconds:g} s")

    def champion() -> LoadedModel:
        served = watcher.current
        if served is None:
            raise no_model()
        return served

    async def explain_results(served: LoadedModel, tweets: list, results: list[dict], whole_batch: bool) -> None:
        """Add an explanation to each result asked for, by the version that answered (off the event loop)."""
        import anyio

        from ml.explain import explain_texts

        wanted = [i for i, tweet in enumerate(tweets) if whole_batch or tweet.explain]
        if wanted:
            explanations = await anyio.to_thread.run_sync(explain_texts, served.model, [tweets[i].text for i in wanted])
            for i, explanation in zip(wanted, explanations):
                results[i]["explanation"] = explanation

    @app.post(
        "/predict", response_model=Union[TweetPrediction, BatchPrediction], tags=["predictions"],
        response_model_exclude_unset=True,  # `explanation` only when asked for
        summary="Classify one tweet or a batch",
        description=(f'Send `{{"text": ...}}` for one tweet or `{{"tweets": [{{"text": ...}}, ...]}}` for up to '
                     f"{config.max_batch} tweets, each with an optional `id`. The whole request is answered "
                     "by one model version, named in the response."),
        responses={400: {"model": Problem, "description": "The body is not UTF-8 encoded JSON."},
                   413: {"model": Problem, "description": f"Body above {config.max_body_bytes} bytes."},
                   422: {"model": InputProblem, "description": "Missing, empty or mistyped text; batch too large."},
                   500: {"model": ModelProblem, "description": "The served model failed on this request."},
                   503: {"model": Problem, "description": "No champion loaded yet, or the queue is full "
                                                          f"({config.max_queue} requests wait): retry after "
                                                          "the Retry-After header's seconds."}},
    )
    async def predict(request: Annotated[PredictRequest, Body(openapi_examples={
        "one tweet": {"summary": "One tweet", "value": {"text": EXAMPLE_TWEET}},
        "batch": {"summary": "A batch with ids", "value": {"tweets": [
            {"id": "1", "text": EXAMPLE_TWEET}, {"id": "2", "text": "my flight is delayed again"}]}},
    })], http: Request):
        timing = http.scope.get(TIMING_KEY)  # RequestMetrics reads the stamps into tweetops_predict_stage_seconds
        if timing is not None:
            timing["validated"] = time.perf_counter()
        tweets = request.tweets if isinstance(request, TweetBatch) else [request]
        if not runner or watcher.current is None:
            raise no_model()
        route = rollout.route() if rollout is not None else "champion"
        texts = [t.text for t in tweets]
        try:
            if route == "canary":  # the challenger answers this request (rollout.route decides, seeded)
                try:
                    served, labels, probabilities = await rollout.runner.predict(texts, timing)
                except NoChampionError:
                    route = "champion"  # the challenger went away: the champion answers
            if route != "canary":
                served, labels, probabilities = await runner[0].predict(texts, timing)
        except NoChampionError:
            raise no_model() from None
        except QueueFull as exc:
            queue_rejections.inc()
            raise HTTPException(503, detail=str(exc), headers={"Retry-After": "1"}) from None
        except ModelFailed as exc:
            model_errors.labels(exc.served.version).inc()
            return JSONResponse({"detail": str(exc), "model_name": exc.served.name,
                                 "model_version": exc.served.version}, status_code=500)
        if timing is not None:
            timing["resumed"] = time.perf_counter()
        if rollout is not None:  # shadow: the other model scores the same tweets in the background
            rollout.record(route, served, tweets, labels)
        batch_size.observe(len(tweets))
        results = []
        for tweet, label, row in zip(tweets, labels, probabilities.tolist()):
            results.append({"id": tweet.id, "label": label, "probabilities": dict(zip(LABELS, row))})
            predictions_total.labels(label, served.version).inc()
        whole_batch = getattr(request, "explain", False)
        explain = whole_batch or any(tweet.explain for tweet in tweets)
        if explain:
            await explain_results(served, tweets, results, whole_batch)
        if isinstance(request, TweetBatch):
            body = {"model_name": served.name, "model_version": served.version, "predictions": results}
        else:
            body = {**results[0], "model_name": served.name, "model_version": served.version}
        if explain:  # nested explanation models: FastAPI validates and orders them (response_model)
            return body
        # The response model's own fields and order, already valid (the contract checked labels and
        # probabilities): rendering it directly is the same JSON without FastAPI re-validating it.
        return JSONResponse(body)

    @app.get("/health", response_model=Health, tags=["operations"], summary="Is a champion being served?",
             responses={503: {"model": Health, "description": "Up, but no champion loaded yet."}})
    def health():
        served = watcher.current
        if served is None:
            body = {"status": "no_champion", "model_name": settings.model_name, "model_version": None,
                    "detail": watcher.last_problem or "loading the champion"}
            return JSONResponse(body, status_code=503)
        return {"status": "ok", "model_name": served.name, "model_version": served.version}

    @app.get("/model", response_model=ModelInfo, tags=["operations"], responses=no_champion,
             summary="The served version, its metrics and lineage",
             description="Read from the MLflow registry when the version was loaded.")
    def model():
        return champion().info

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics",
             response_class=Response,
             responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}},
                              "description": "Request counts, latency histogram, predictions per label, newest drift scores."}})
    def metrics():
        drift_scores.refresh()
        return Response(generate_latest(metrics_registry), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(RequestValidationError)
    async def explain_bad_input(request: Request, exc: RequestValidationError):
        detail = [{"loc": [str(part) for part in err["loc"]], "msg": _explain(err), "type": err["type"]}
                  for err in exc.errors()]
        message = "; ".join(f"{_where(err['loc'])}: {err['msg']}" for err in detail)
        return JSONResponse({"message": message, "detail": detail}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def explain_http_problem(request: Request, exc: StarletteHTTPException):
        detail = exc.detail
        if exc.status_code == 400:  # FastAPI's words for a body that is not UTF-8 JSON
            detail = "the body could not be read: send UTF-8 encoded JSON with Content-Type: application/json"
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(ContractError)
    async def model_broke_contract(request: Request, exc: ContractError):
        log.error("served model broke the contract: %s", exc)
        return JSONResponse({"detail": f"the served model gave an invalid answer: {exc}"}, status_code=500)

    app.add_middleware(BodySizeLimit, max_bytes=config.max_body_bytes)
    app.add_middleware(RequestMetrics, requests_total=requests_total, latency=latency, stages=stage_seconds)
    from ml.api_auth import protect

    protect(app, settings.api_token)  # outermost: a request without the token reaches nothing else
    return app


def _explain(err: dict) -> str:
    if err["type"] == "json_invalid":
        return f"the body is not valid JSON ({err.get('ctx', {}).get('error', 'decode error')})"
    if err["type"] == "missing" and tuple(err["loc"]) == ("body",):
        return 'a JSON body is required: {"text": "..."} or {"tweets": [{"text": "..."}]}'
    if err["type"] == "string_pattern_mismatch":  # the only pattern: text must not be blank
        return "must contain at least one non-whitespace character"
    if err["type"] == "extra_forbidden":
        return "unknown field: a tweet has `text` and optional `id`, `label`, `explain`; a batch has `tweets` and `explain`"
    return err["msg"]


def _where(loc: list[str]) -> str:
    # Drop "body" and the union tag ("tweet"/"batch"): users think in their JSON's own fields.
    parts = [p for p in loc[1:] if p not in ("tweet", "batch")] if loc[:1] == ["body"] else loc
    if len(loc) == 2 and loc[1].isdigit():  # a JSON decode error's position, not a field
        parts = []
    parts = parts or ["body"]
    return ".".join(parts)


class BodySizeLimit:
    """ASGI middleware: 413 for a body above max_bytes, whether declared (Content-Length) or streamed."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            return await self._too_large(scope, receive, send)
        received = 0

        async def counted_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    from fastapi import HTTPException  # FastAPI turns this into the 413 response
                    raise HTTPException(413, detail=self._message())
            return message

        await self.app(scope, counted_receive, send)

    def _message(self) -> str:
        return (f"request body above the {self.max_bytes}-byte limit; "
                "send fewer or shorter tweets per request")

    async def _too_large(self, scope, receive, send):
        from fastapi.responses import JSONResponse

        response = JSONResponse({"detail": self._message()}, status_code=413)
        await response(scope, receive, send)


TIMING_KEY = "tweetops.timing"  # ASGI scope key: the request's perf_counter() stamps
STAGES = {  # tweetops_predict_stage_seconds{stage}: consecutive, they add up to the request's latency
    "validation": "routing, reading the body, parsing and checking the JSON",
    "queue": "waiting for the model thread (behind other model calls; the hand-off to it)",
    "model": "the model call (shared by the requests batched into it)",
    "resume": "the hand-off of the answer back to the event loop",
    "response": "building, serialising and sending the response (metrics, shadow queue included)",
}


class RequestMetrics:
    """ASGI middleware: count requests and time them, labelled by route (not raw path: bounded series).
    With `stages`, an answered /predict request's time is also split into STAGES."""

    def __init__(self, app, requests_total, latency, stages=None):
        self.app, self.requests_total, self.latency, self.stages = app, requests_total, latency, stages

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        timing = scope[TIMING_KEY] = {"started": started}
        status = [500]

        async def send_with_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            endpoint = getattr(scope.get("route"), "path", None)
            if endpoint is None:  # rejected before routing (e.g. 413): still count it under its path
                paths = {getattr(r, "path", None) for r in getattr(scope.get("app"), "routes", [])}
                endpoint = scope["path"] if scope["path"] in paths else "unmatched"
            ended = time.perf_counter()
            self.requests_total.labels(endpoint, scope["method"], str(status[0])).inc()
            self.latency.labels(endpoint).observe(ended - started)
            if self.stages is not None and "resumed" in timing and status[0] == 200:
                self._observe_stages(timing, ended)

    def _observe_stages(self, timing: dict, ended: float) -> None:
        marks = [timing["started"], timing["validated"], timing["model_start"], timing["model_end"],
                 timing["resumed"], ended]
        for stage, begin, end in zip(STAGES, marks, marks[1:]):
            self.stages.labels(stage).observe(max(0.0, end - begin))


# --- CLI -----------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = ServingConfig()
    parser.add_argument("--poll-seconds", type=float, default=defaults.poll_seconds,
                        help="how often to check the registry for a new champion (default %(default)s)")
    parser.add_argument("--max-batch", type=int, default=defaults.max_batch,
                        help="most tweets per /predict request (default %(default)s)")
    parser.add_argument("--max-body-bytes", type=int, default=defaults.max_body_bytes,
                        help="largest request body in bytes (default %(default)s)")
    parser.add_argument("--max-queue", type=int, default=defaults.max_queue,
                        help="most /predict requests waiting for the model; above it 503 with Retry-After "
                             "(default %(default)s)")
    parser.add_argument("--access-log", action="store_true", help="log every request (costs latency)")
    parser.add_argument("--rollout", default=None, metavar="FILE",
                        help="shadow/canary policy for the challenger (default: ml/policy/rollout.yaml)")


def run(args: argparse.Namespace) -> int:
    import uvicorn

    settings = load_settings()
    # Fail a poll in seconds, not minutes, when the registry is down: the current model keeps serving.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        config = ServingConfig(poll_seconds=args.poll_seconds, max_batch=args.max_batch,
                               max_body_bytes=args.max_body_bytes, max_queue=args.max_queue)
        from ml.shadow import load_rollout

        rollout_config = load_rollout(args.rollout)
    except ValueError as exc:
        print(f"tweetops serve: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    host, port = host_port(settings.api_url, 8000)
    print(f"serving {settings.model_name}@{CHAMPION} from {settings.mlflow_tracking_uri} on {settings.api_url} "
          f"(docs at {settings.api_url}/docs)", flush=True)
    # One worker: each worker would hold its own model copy and poller; two cores gain nothing from more.
    uvicorn.run(create_app(settings, config, rollout_config), host=host, port=port, workers=1,
                access_log=args.access_log, log_level="info")
    return 0
