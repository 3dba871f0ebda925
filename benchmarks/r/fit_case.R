# Time lme4 on a benchmark case: Rscript fit_case.R SPEC_JSON -> one JSON line.
# The spec (from benchmarks/cases.py) names the CSV data, the factor columns, the formula, the
# family, REML and nAGQ, the mode ("fit" or "bootstrap", with nsim) and the repetitions.
suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})
spec <- fromJSON(commandArgs(trailingOnly = TRUE)[1])
df <- utils::read.csv(spec$data, stringsAsFactors = FALSE)
for (f in spec$factors) df[[f]] <- factor(df[[f]])
form <- as.formula(spec$formula)

peak_rss_mb <- function() {
  st <- readLines("/proc/self/status")
  as.numeric(strsplit(trimws(sub("VmHWM:", "", grep("^VmHWM", st, value = TRUE))), " ")[[1]][1]) / 1024
}
fit <- function() {
  if (spec$family == "gaussian") {
    lmer(form, df, REML = spec$reml)
  } else {
    glmer(form, df, family = spec$family, nAGQ = spec$nagq)
  }
}
t_first <- Sys.time()
m <- suppressWarnings(suppressMessages(fit()))  # warm-up
first <- as.numeric(difftime(Sys.time(), t_first, units = "secs"))
times <- numeric(spec[["repeat"]])
if (spec$mode == "bootstrap") {
  fun <- function(x) c(getME(x, "theta"), fixef(x))
  cores <- parallel::detectCores()
  for (i in seq_len(spec[["repeat"]])) {
    t0 <- Sys.time()
    b <- suppressWarnings(suppressMessages(
      bootMer(m, FUN = fun, nsim = spec$nsim, seed = 1, parallel = "multicore", ncpus = cores)))
    times[i] <- as.numeric(difftime(Sys.time(), t0, units = "secs"))
  }
  out <- list(seconds = median(times), times = times, nsim = spec$nsim, workers = cores,
              failed = sum(!complete.cases(b$t)), peak_rss_mb = peak_rss_mb())
} else {
  if (first > 60) {  # a slow first fit is the measurement (as the Python drivers)
    times <- first
  } else {
    # quick fits repeat for at least a second (up to 200 fits), as the Python drivers
    times <- numeric(0)
    t_start <- Sys.time()
    repeat {
      t0 <- Sys.time()
      m <- suppressWarnings(suppressMessages(fit()))
      times <- c(times, as.numeric(difftime(Sys.time(), t0, units = "secs")))
      spent <- as.numeric(difftime(Sys.time(), t_start, units = "secs"))
      if (length(times) >= 200 ||
          (length(times) >= spec[["repeat"]] && (spent >= 1 || median(times) > 0.05))) break
    }
  }
  out <- list(seconds = median(times), times = times, loglik = as.numeric(logLik(m)),
              criterion = if (isLMM(m) && isREML(m)) "REML" else "ML",
              evaluations = m@optinfo$feval, peak_rss_mb = peak_rss_mb(),
              lme4 = as.character(packageVersion("lme4")))
}
cat(toJSON(out, auto_unbox = TRUE, digits = NA), "\n")
