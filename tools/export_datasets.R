#!/usr/bin/env Rscript
## Export the example data sets shipped with mixedmodels from their R packages.
##
## Usage (from the repository root):
##     Rscript tools/export_datasets.R [output-directory]
##
## The default output directory is src/mixedmodels/datasets/data/ next to this script's parent.
## For every data set two files are written:
##   <name>.csv.gz  gzip-compressed CSV: header line with R's column names, no row names, NA as an
##                  empty field, factor labels quoted, doubles written with the shortest of 15, 16
##                  or 17 significant digits that a correctly rounded parser (Python's float(),
##                  C strtod) reads back to the identical double.
##   <name>.json    metadata: title, description, source, nrow, column kinds and factor levels (in
##                  R's level order) and a "check" block (column sums, level counts) that the
##                  Python loader's tests compare against.

suppressPackageStartupMessages({
  library(lme4)
  library(nlme)
  library(jsonlite)
})

script_dir <- local({
  arg <- grep("^--file=", commandArgs(trailingOnly = FALSE), value = TRUE)
  if (length(arg)) dirname(normalizePath(sub("^--file=", "", arg[1]))) else getwd()
})
args <- commandArgs(trailingOnly = TRUE)
out_dir <- if (length(args)) args[1] else
  file.path(dirname(script_dir), "src", "mixedmodels", "datasets", "data")
dir.create(out_dir, recursive = TRUE, showWarnings = FALSE)

pkg_version <- function(pkg) paste(pkg, format(packageVersion(pkg)))

## ---------------------------------------------------------------------------------------------
## Hand-written metadata (titles, descriptions and references are our own wording).
## ---------------------------------------------------------------------------------------------
info <- list(
  sleepstudy = list(
    package = "lme4",
    title = "Reaction times under sleep deprivation",
    description = paste(
      "Average reaction time (ms) on a psychomotor vigilance task for 18 subjects, recorded once a",
      "day over ten days (Days 0-9) in a study where subjects were restricted to three hours of",
      "sleep per night. Each subject contributes one measurement per day, so Days is crossed with",
      "Subject. The usual model is Reaction ~ Days + (Days | Subject), with a correlated random",
      "intercept and slope per subject."),
    reference = paste(
      "Belenky, G. et al. (2003). Patterns of performance degradation and restoration during",
      "sleep restriction and subsequent recovery: a sleep dose-response study.",
      "Journal of Sleep Research 12, 1-12.")),
  Dyestuff = list(
    package = "lme4",
    title = "Batch-to-batch variation in dyestuff yield",
    description = paste(
      "Yield of dyestuff (grams of standard colour) from six batches of an intermediate product,",
      "with five preparations measured from each batch. It is a balanced one-way layout with a",
      "single random factor, and is fitted as Yield ~ 1 + (1 | Batch)."),
    reference = paste(
      "Davies, O. L. and Goldsmith, P. L. (eds.) (1972). Statistical Methods in Research and",
      "Production, 4th ed. Oliver and Boyd, Edinburgh.")),
  Dyestuff2 = list(
    package = "lme4",
    title = "Simulated dyestuff yields with no batch effect",
    description = paste(
      "Artificial data with the same layout as Dyestuff (six batches, five observations each) in",
      "which the between-batch variability is small relative to the residual noise. Fitting",
      "Yield ~ 1 + (1 | Batch) gives a batch variance estimate of exactly zero, a standard",
      "example of a singular fit."),
    reference = paste(
      "Box, G. E. P. and Tiao, G. C. (1973). Bayesian Inference in Statistical Analysis.",
      "Addison-Wesley, Reading, MA.")),
  Penicillin = list(
    package = "lme4",
    title = "Penicillin potency assay on plates",
    description = paste(
      "Diameter (mm) of the zone where bacterial growth is inhibited, used to assess the potency",
      "of six penicillin samples. Every sample was applied to each of 24 agar plates, so plate",
      "and sample are fully crossed with one observation per cell. The typical model has crossed",
      "random intercepts: diameter ~ 1 + (1 | plate) + (1 | sample)."),
    reference = paste(
      "Davies, O. L. and Goldsmith, P. L. (eds.) (1972). Statistical Methods in Research and",
      "Production, 4th ed. Oliver and Boyd, Edinburgh.")),
  Pastes = list(
    package = "lme4",
    title = "Strength of a chemical paste by delivery batch and cask",
    description = paste(
      "Strength of a paste product measured twice on each of three casks drawn from each of ten",
      "delivery batches. Cask labels a, b, c are reused within every batch, so cask is nested in",
      "batch only through the formula (the column sample holds the unique batch:cask label). It",
      "is modelled as strength ~ 1 + (1 | batch/cask)."),
    reference = paste(
      "Davies, O. L. and Goldsmith, P. L. (eds.) (1972). Statistical Methods in Research and",
      "Production, 4th ed. Oliver and Boyd, Edinburgh.")),
  cake = list(
    package = "lme4",
    title = "Breaking angle of chocolate cakes",
    description = paste(
      "Angle at which a slice of chocolate cake broke, for three recipes baked at six",
      "temperatures (175-225 degrees F), with fifteen replicates of each recipe. Temperature is",
      "an ordered factor (numeric copy in temp), so R codes it with polynomial contrasts; each",
      "recipe:replicate batter was split over the six temperatures, giving a split-plot design",
      "usually fitted as angle ~ recipe * temperature + (1 | recipe:replicate)."),
    reference = paste(
      "Cook, F. E. (1938). Chocolate cake, I. Optimum baking temperature. Master's thesis, Iowa",
      "State College; analysed in Cochran, W. G. and Cox, G. M. (1957). Experimental Designs,",
      "2nd ed. Wiley, New York.")),
  InstEval = list(
    package = "lme4",
    title = "Student evaluations of lecturers at ETH Zurich",
    description = paste(
      "About 73,000 ratings (y, 1 = poor to 5 = very good) given by students (s) to lecturers",
      "(d), together with the student's study age, the lecture's age, whether the lecture is a",
      "service course for another department, and the lecturer's department. Students and",
      "lecturers are partially crossed, which makes this a standard benchmark for large crossed",
      "random-effects models such as y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept:service)."),
    reference = paste(
      "University lecture/instructor evaluations by students at ETH Zurich, anonymised; as",
      "distributed with the R package lme4.")),
  cbpp = list(
    package = "lme4",
    title = "Contagious bovine pleuropneumonia in Ethiopian herds",
    description = paste(
      "Number of new serological cases of contagious bovine pleuropneumonia (incidence) among",
      "the cattle of 15 herds (size animals), followed over four periods in Ethiopia's highlands.",
      "Observations are grouped by herd, and the data are usually analysed as binomial",
      "proportions: cbind(incidence, size - incidence) ~ period + (1 | herd), family binomial."),
    reference = paste(
      "Lesnoff, M. et al. (2004). Within-herd spread of contagious bovine pleuropneumonia in",
      "Ethiopian highlands. Preventive Veterinary Medicine 64, 27-40.")),
  grouseticks = list(
    package = "lme4",
    title = "Sheep ticks counted on red grouse chicks",
    description = paste(
      "Number of ticks found on the heads of red grouse chicks sampled in Scotland in 1995-1997,",
      "with the chick's brood, the site's location and altitude (HEIGHT, with a centred copy",
      "cHEIGHT) and the year. Chicks are nested in broods, which are nested in locations. A",
      "typical analysis is a Poisson GLMM with observation-, brood- and location-level random",
      "intercepts: TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)."),
    reference = paste(
      "Elston, D. A. et al. (2001). Analysis of aggregation, a worked example: numbers of ticks",
      "on red grouse chicks. Parasitology 122, 563-569.")),
  VerbAgg = list(
    package = "lme4",
    title = "Verbal aggression questionnaire responses",
    description = paste(
      "Item responses of 316 people to 24 questionnaire items describing how they would react",
      "verbally (curse, scold, shout) in four frustrating situations, either as a wish to act or",
      "as actual behaviour. resp is the ordered three-level answer and r2 its dichotomised form;",
      "Anger is a trait-anger score and Gender the respondent's sex. It is commonly analysed as",
      "an item-response model with crossed random effects of person and item, e.g.",
      "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item), family binomial."),
    reference = paste(
      "De Boeck, P. and Wilson, M. (eds.) (2004). Explanatory Item Response Models: A",
      "Generalized Linear and Nonlinear Approach. Springer, New York.")),
  Machines = list(
    package = "nlme",
    title = "Productivity scores of workers on three machine brands",
    description = paste(
      "Productivity score obtained by each of six workers (randomly chosen) on each of three",
      "machine brands, with three replicate measurements per worker and machine. Machine is a",
      "fixed effect and Worker a random factor crossed with it; a typical model is",
      "score ~ Machine + (Machine | Worker), with a 3 x 3 random-effects covariance. Worker is",
      "stored as nlme left it, an ordered factor with levels sorted by mean score."),
    reference = paste(
      "Milliken, G. A. and Johnson, D. E. (1992). Analysis of Messy Data, Vol. I: Designed",
      "Experiments. Chapman and Hall, London; also Pinheiro, J. C. and Bates, D. M. (2000).",
      "Mixed-Effects Models in S and S-PLUS. Springer, New York."))
)

## ---------------------------------------------------------------------------------------------
## Helpers
## ---------------------------------------------------------------------------------------------
get_data <- function(name, package) {
  env <- new.env()
  utils::data(list = name, package = package, envir = env)
  d <- get(name, envir = env)
  ## Drop groupedData (and any other) classes and the attributes that come with them.
  d <- as.data.frame(d)
  d <- data.frame(lapply(d, function(x) x), check.names = FALSE, stringsAsFactors = FALSE)
  rownames(d) <- NULL
  d
}

column_kind <- function(x) {
  if (is.ordered(x)) "ordered"
  else if (is.factor(x)) "factor"
  else if (is.logical(x)) "logical"
  else if (is.integer(x)) "integer"
  else if (is.double(x)) "numeric"
  else stop("unsupported column type: ", paste(class(x), collapse = "/"))
}

## Correctly rounded text -> double conversion. R's own as.numeric()/read.csv() are not correctly
## rounded for every 15-17 digit string, whereas jsonlite's parser (C strtod) is, like Python's
## float() and numpy; using it for the round-trip check guarantees that Python reads back the
## identical double.
parse_exact <- function(s) {
  out <- rep(NA_real_, length(s))
  ok <- !is.na(s) & nzchar(s)
  if (any(ok)) out[ok] <- jsonlite::parse_json(paste0("[", paste(s[ok], collapse = ","), "]"),
                                               simplifyVector = TRUE)
  out
}

## Shortest of %.15g / %.16g / %.17g that reads back (correctly rounded) to the identical double.
format_double <- function(x) {
  out <- rep(NA_character_, length(x))
  ok <- !is.na(x)
  if (any(!is.finite(x[ok]))) stop("non-finite values are not supported")
  v <- x[ok]
  s <- sprintf("%.15g", v)
  for (d in 16:17) {
    bad <- parse_exact(s) != v
    if (!any(bad)) break
    s[bad] <- sprintf(paste0("%.", d, "g"), v[bad])
  }
  out[ok] <- s
  out
}

csv_quote <- function(s) {
  out <- paste0('"', gsub('"', '""', s, fixed = TRUE), '"')
  out[is.na(s)] <- NA_character_
  out
}

write_csv_gz <- function(d, path) {
  cols <- lapply(d, function(x) {
    kind <- column_kind(x)
    if (kind %in% c("factor", "ordered")) csv_quote(as.character(x))
    else if (kind == "numeric") format_double(x)
    else if (kind == "integer") ifelse(is.na(x), NA_character_, as.character(x))
    else ifelse(is.na(x), NA_character_, ifelse(x, "TRUE", "FALSE"))
  })
  cols <- lapply(cols, function(s) { s[is.na(s)] <- ""; s })
  lines <- c(paste(csv_quote(names(d)), collapse = ","),
             do.call(paste, c(cols, sep = ",")))
  ## R's gzfile() writes a gzip header with a zero timestamp and no file name, so re-running
  ## the script reproduces the files byte for byte.
  con <- gzfile(path, open = "wb", compression = 9)
  on.exit(close(con))
  writeLines(lines, con, sep = "\n", useBytes = TRUE)
}

column_check <- function(x) {
  kind <- column_kind(x)
  chk <- list(n_missing = sum(is.na(x)))
  if (kind %in% c("factor", "ordered")) {
    tab <- table(x, useNA = "no")
    chk$counts <- as.list(setNames(as.integer(tab), names(tab)))
  } else if (kind == "logical") {
    chk$n_true <- sum(x, na.rm = TRUE)
  } else {
    chk$sum <- sum(as.numeric(x), na.rm = TRUE)
  }
  chk
}

export_one <- function(name) {
  meta_in <- info[[name]]
  d <- get_data(name, meta_in$package)
  columns <- lapply(names(d), function(col) {
    x <- d[[col]]
    entry <- list(name = col, kind = column_kind(x))
    if (is.factor(x)) entry$levels <- I(levels(x))
    entry
  })
  meta <- list(
    name = name,
    title = meta_in$title,
    description = meta_in$description,
    source = list(
      package = meta_in$package,
      version = utils::packageDescription(meta_in$package)$Version,
      r_object = paste0(meta_in$package, "::", name),
      reference = meta_in$reference),
    nrow = nrow(d),
    columns = columns,
    check = setNames(lapply(d, column_check), names(d))
  )
  csv_path <- file.path(out_dir, paste0(name, ".csv.gz"))
  json_path <- file.path(out_dir, paste0(name, ".json"))
  write_csv_gz(d, csv_path)
  writeLines(toJSON(meta, auto_unbox = TRUE, digits = NA, pretty = TRUE), json_path,
             useBytes = TRUE)

  ## Round-trip check: read the CSV back the way the Python loader will and compare.
  back <- utils::read.csv(gzfile(csv_path), check.names = FALSE, na.strings = "",
                          colClasses = "character")
  stopifnot(identical(names(back), names(d)), nrow(back) == nrow(d))
  for (col in names(d)) {
    x <- d[[col]]
    y <- back[[col]]
    if (is.factor(x)) stopifnot(identical(as.character(x), y))
    else if (is.logical(x)) stopifnot(identical(x, as.logical(y)))
    else stopifnot(identical(as.numeric(x), parse_exact(y)))
  }
  cat(sprintf("%-12s %6d rows %2d cols  %8d bytes\n", name, nrow(d), ncol(d),
              file.size(csv_path)))
}

for (name in names(info)) export_one(name)
