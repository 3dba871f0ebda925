"""Predicting for many users with few observations each: an online-service simulation.

Users of an online service differ in how long their sessions last; most users have been seen
only a few times. Sessions are simulated with a user-level random intercept and a platform
effect (mobile or desktop), and each user's next sessions are held out. Three models predict
the held-out sessions:

* ``lm(log_minutes ~ platform)``: one line for everybody (complete pooling);
* ``lm(log_minutes ~ platform + user)``: a separate fixed effect per user (no pooling);
* ``lmer(log_minutes ~ platform + (1 | user))``: user effects drawn from a common distribution,
  so each user's estimate is shrunk towards the population, more so for users seen rarely.

The script compares the prediction errors overall and by how many sessions of the user were
seen, prints the variance components, shows the shrinkage factor per number of sessions, and
predicts for users never seen before (``allow_new_levels=True``), which only the pooled and the
mixed model can do.

Run it with ``python docs/examples/online_services.py``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

import mixedmodels as mm

TRUE = {
    "intercept": 2.0,  # log minutes of a desktop session of a typical user
    "mobile": -0.4,  # mobile minus desktop
    "sd_user": 0.5,
    "sigma": 0.8,
}

SIZES = {
    "full": {"users": 500, "new_users": 50},
    "small": {"users": 150, "new_users": 20},
}

TEST_SESSIONS = 3  # held-out sessions per user
MEAN_TRAIN_SESSIONS = 4  # geometric number of observed sessions, at least 1


def section(title: str) -> None:
    print(f"\n{'=' * 8} {title} {'=' * max(4, 70 - len(title))}")


def simulate_sessions(n_users: int, n_new: int, rng: np.random.Generator) -> pd.DataFrame:
    """One row per session: user, platform, split (train / test / new) and log_minutes."""
    users = [f"u{i:04d}" for i in range(n_users + n_new)]
    effects = rng.normal(0.0, TRUE["sd_user"], len(users))
    n_train = rng.geometric(1 / MEAN_TRAIN_SESSIONS, n_users)
    frames = []
    for i, user in enumerate(users):
        if i < n_users:
            splits = ["train"] * n_train[i] + ["test"] * TEST_SESSIONS
        else:
            splits = ["new"] * TEST_SESSIONS
        mobile = rng.random(len(splits)) < 0.6
        log_minutes = (
            TRUE["intercept"]
            + TRUE["mobile"] * mobile
            + effects[i]
            + rng.normal(0.0, TRUE["sigma"], len(splits))
        )
        frames.append(
            pd.DataFrame(
                {
                    "user": user,
                    "platform": np.where(mobile, "mobile", "desktop"),
                    "split": splits,
                    "log_minutes": log_minutes,
                }
            )
        )
    sessions = pd.concat(frames, ignore_index=True)
    sessions["user"] = pd.Categorical(sessions["user"], categories=users)
    return sessions


def rmse(error: pd.Series) -> float:
    return float(np.sqrt(np.mean(error**2)))


def main(size: str = "full") -> dict:
    cfg = SIZES[size]
    rng = np.random.default_rng(31)
    sessions = simulate_sessions(cfg["users"], cfg["new_users"], rng)
    train = sessions[sessions["split"] == "train"].copy()
    test = sessions[sessions["split"] == "test"].copy()
    new = sessions[sessions["split"] == "new"].copy()
    # the models see only the users of the training data
    seen = train["user"].cat.categories[: cfg["users"]]
    for frame in (train, test):
        frame["user"] = frame["user"].cat.set_categories(seen)
    train.attrs["name"] = "train"

    section(f"Data: {len(train)} training sessions of {cfg['users']} users")
    per_user = train.groupby("user", observed=True).size()
    print(per_user.value_counts().sort_index().rename("users").rename_axis("sessions").head(10))

    pooled = mm.lm("log_minutes ~ platform", train)
    no_pooling = mm.lm("log_minutes ~ platform + user", train)
    mixed = mm.lmer("log_minutes ~ platform + (1 | user)", train)

    section("The mixed model")
    print(mixed.summary())
    print(f"true values: sd_user = {TRUE['sd_user']}, sigma = {TRUE['sigma']}")

    section("Prediction error on held-out sessions (RMSE, log minutes)")
    predictions = pd.DataFrame(
        {
            "pooled": pooled.predict(test),
            "no pooling": no_pooling.predict(test),
            "mixed": mixed.predict(test),
        }
    )
    errors = predictions.sub(test["log_minutes"], axis=0)
    overall = errors.apply(rmse)
    print(overall.round(4).to_string())

    bucket = pd.cut(
        test["user"].map(per_user).astype(int),
        bins=[0, 1, 3, 7, np.inf],
        labels=["1", "2-3", "4-7", "8+"],
    )
    by_sessions = errors.groupby(bucket, observed=True).agg(rmse)
    by_sessions.insert(0, "users", test.groupby(bucket, observed=True)["user"].nunique())
    by_sessions.index.name = "sessions seen"
    print("\nby number of sessions seen for the user:")
    print(by_sessions.round(4))

    section("Shrinkage: how much of a user's own mean deviation is kept")
    vc = mixed.varcorr
    var_user, var_resid = vc["user"].cov[0, 0], mixed.sigma**2
    shrinkage = pd.Series(
        {n: var_user / (var_user + var_resid / n) for n in (1, 2, 4, 8, 16)},
        name="shrinkage factor",
    ).rename_axis("sessions")
    print(shrinkage.round(3).to_string())

    section(f"Users never seen before ({cfg['new_users']} users)")
    new_pred = pd.DataFrame(
        {
            "pooled": pooled.predict(new),
            "mixed": mixed.predict(new, allow_new_levels=True),
        }
    )
    new_rmse = new_pred.sub(new["log_minutes"], axis=0).apply(rmse)
    print(new_rmse.round(4).to_string())
    interval = mixed.predict(new.head(4), allow_new_levels=True, interval="prediction", level=0.95)
    print("\n95% prediction intervals for the first sessions of new users:")
    print(pd.concat([new.head(4)[["user", "platform"]], interval], axis=1).round(3))

    return {
        "mixed": mixed,
        "varcorr": vc.to_frame(),
        "rmse": overall,
        "rmse_by_sessions": by_sessions,
        "shrinkage": shrinkage,
        "rmse_new_users": new_rmse,
        "new_user_intervals": interval,
    }


if __name__ == "__main__":
    main()
