"""Every message of the vertical GLMs (hetero_lr, hetero_linr, hetero_poisson), in the order they flow.

Why a table: a round's halves live in three modules (`hetero_train` runs the epochs, `hetero_protocol` one
mini-batch, `hetero` the scores after training), and each party's code sends half of them. `[[x]]` is x
encrypted, under the key of the party that decrypts it (the arbiter's key when there is one); "masked" means
plus a random integer only its sender knows.

Once: SETUP, READY, KEY. Per mini-batch without an arbiter: RESIDUAL, HOST_TERM, SCALED_TERM (several hosts),
GRADIENT and GRADIENT_PLAIN (each host's gradient, decrypted by the guest), GUEST_PART, PAIR_MASK (several
hosts) and GUEST_PART_PLAIN (the guest's gradient, decrypted by the hosts); with an arbiter, RESIDUAL,
HOST_TERM, SCALED_TERM, then GRADIENT and GRADIENT_PLAIN between every party and the arbiter. Per epoch:
REPORT, CONTROL. With the exact residual (`hetero_exact`) per batch instead: SCORE_SHARE (several hosts), the MPC
engine's messages between the guest and the first host (MPC_STEP; MPC_BASE_OT once, MPC_OT per epoch),
RESIDUAL_SHARE, HOST_SHARE, HOST_SHARE_PLAIN (several hosts), GRADIENT and GRADIENT_PLAIN (every host's),
GUEST_PART and GUEST_PART_PLAIN (the first host's only). After training and in batch prediction: the hosts'
partial scores.
"""

from __future__ import annotations

from ...runtime.messages import Message, Protocol

SETUP = Message("glm/setup", "guest", ("host", "arbiter"),
                "{rows, classes, seed, valid_rows, agreed}: the row counts to check, the classes K, the batch "
                "shuffling seed, and the settings every party must share")
READY = Message("glm/ready", "host", "guest", "{rows, valid_rows, features}: the host's row and weight counts")
KEY = Message("glm/key", ("guest", "host", "arbiter"), ("guest", "host"),
              "a public key (to_dict): the arbiter's to everyone, or without one the guest's to the hosts and each "
              "host's to the guest")
RESIDUAL = Message("glm/d", "guest", "host", "{c, s (secret scales only)}: [[c]] and [[s]] of the batch's residual "
                   "d = c + s * sum of the hosts' terms, shape (B, K)")
HOST_TERM = Message("glm/v", "host", "guest", "[[v_h]], shape (B, K): the host's term of the residual")
SCALED_TERM = Message("glm/sv", "host", "host", "[[s * v_h]] under the guest's key, shape (B, K)")
GRADIENT = Message("glm/grad", ("guest", "host"), ("guest", "arbiter"),
                   "masked [[X^T d]] of the sender's features, shape (d, K), for the key owner to decrypt")
GRADIENT_PLAIN = Message("glm/grad/plain", ("guest", "arbiter"), ("guest", "host"),
                         "the decryption of GRADIENT: integers, still masked")
GUEST_PART = Message("glm/guest_part", "guest", "host",
                     "masked [[X_g^T (s * v_h)]] under the host's key, shape (d_g, K)")
PAIR_MASK = Message("glm/pair_mask", "host", "host",
                    "random integers R_i from host i to host i+1 (cyclically), which cancel in the guest's sum")
GUEST_PART_PLAIN = Message("glm/guest_part/plain", "host", "guest",
                           "the decryption of GUEST_PART plus R_i - R_(i-1): integers, still masked")
SCORE_SHARE = Message("glm/z_share", "host", ("guest", "host"),
                      "exact residual, hosts after the first: one uniform ring share (mod 2^64) of the sender's "
                      "partial scores, shape (B, K), to the guest, the other to the first host")
MPC_STEP = Message("mpc/{step}", ("guest", "host"), ("guest", "host"),
                   "exact residual: the MPC engine's openings between the guest and the first host (the sigmoid "
                   "on shares of z): values masked by tuple shares only")
MPC_BASE_OT = Message("mpc/ot/{route}/base/{point}", ("guest", "host"), ("guest", "host"),
                      "exact residual: the base oblivious transfers of the dealer-free tuples (once per training)")
MPC_OT = Message("mpc/ot/{route}/{step}", ("guest", "host"), ("guest", "host"),
                 "exact residual: OT extension messages making each epoch's tuples (independent of the data)")
RESIDUAL_SHARE = Message("glm/d_share", "guest", "host",
                         "exact residual: [[d_g]], the guest's ring share of d = sigmoid(z) - y, shape (B, K)")
HOST_SHARE = Message("glm/d_share/h1", "host", "guest",
                     "exact residual: [[d_1]], the first host's ring share of d under its own key, shape (B, K)")
HOST_SHARE_PLAIN = Message("glm/d_share/h1/plain", "host", "host",
                           "exact residual: d_1 in the clear to the other hosts (alone a uniform ring element)")
REPORT = Message("glm/report", "host", "guest",
                 "{change, valid}: the host's |dW|^2 this epoch (with tol), its partial validation scores")
CONTROL = Message("glm/control", "guest", ("host", "arbiter"),
                  "{go, improved}: whether training goes on, whether this epoch's weights are the best so far")
TRAIN_SCORES = Message("glm/train", "host", "guest",
                       "the host's partial scores X_h w_h + offset on the training rows, shape (n, K)")
PREDICT_SCORES = Message("glm/predict", "host", "guest",
                         "the host's partial scores X_h w_h + offset on the rows to predict, shape (n, K)")

HETERO_GLM = Protocol("hetero_glm", (SETUP, READY, KEY, RESIDUAL, HOST_TERM, SCALED_TERM, GRADIENT, GRADIENT_PLAIN,
                                     GUEST_PART, PAIR_MASK, GUEST_PART_PLAIN, SCORE_SHARE, MPC_STEP, MPC_BASE_OT,
                                     MPC_OT, RESIDUAL_SHARE, HOST_SHARE, HOST_SHARE_PLAIN, REPORT, CONTROL,
                                     TRAIN_SCORES, PREDICT_SCORES))
