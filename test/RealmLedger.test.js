const { expect } = require("chai");
const { ethers } = require("hardhat");
const { loadFixture, time } = require("@nomicfoundation/hardhat-toolbox/network-helpers");
const { entry, receiptLeaf, merkleRoot, merkleProof, signRefund } = require("./helpers");

const ONE = 10n ** 18n;
const ROOT = ethers.keccak256(ethers.toUtf8Bytes("epoch receipts"));

describe("RealmLedger", function () {
  async function deploy() {
    const [owner, operator, alice, bob, worker1, worker2, mallory] = await ethers.getSigners();
    const token = await (await ethers.getContractFactory("NineThousand")).deploy(owner.address, 1000n * ONE);
    const ledger = await (await ethers.getContractFactory("RealmLedger")).deploy(
      await token.getAddress(),
      operator.address,
    );
    for (const user of [alice, bob, mallory]) {
      await token.connect(user).faucet();
      await token.connect(user).approve(await ledger.getAddress(), ethers.MaxUint256);
    }
    return { owner, operator, alice, bob, worker1, worker2, mallory, token, ledger };
  }

  async function funded() {
    const f = await deploy();
    await f.ledger.connect(f.alice).deposit(100n * ONE);
    await f.ledger.connect(f.bob).deposit(50n * ONE);
    return f;
  }

  async function settledOnce() {
    const f = await funded();
    // alice spent 10, bob 5; worker1 earns 9, worker2 4.5, the realm 1.5
    await f.ledger
      .connect(f.operator)
      .settle(
        1,
        ROOT,
        3,
        [entry(f.alice.address, 10n * ONE), entry(f.bob.address, 5n * ONE)],
        [entry(f.worker1.address, 9n * ONE), entry(f.worker2.address, 45n * ONE / 10n)],
        15n * ONE / 10n,
      );
    return f;
  }

  describe("deployment", function () {
    it("records the token and the operator and starts before epoch 1", async function () {
      const { ledger, token, operator } = await loadFixture(deploy);
      expect(await ledger.token()).to.equal(await token.getAddress());
      expect(await ledger.operator()).to.equal(operator.address);
      expect(await ledger.lastEpoch()).to.equal(0n);
      expect(await ledger.receiptsRoot(1)).to.equal(ethers.ZeroHash);
    });

    it("exposes the EIP-712 domain refund vouchers are signed under", async function () {
      const { ledger } = await loadFixture(deploy);
      const { chainId } = await ethers.provider.getNetwork();
      const domain = { name: "MTOR RealmLedger", version: "1", chainId, verifyingContract: await ledger.getAddress() };
      expect(await ledger.domainSeparator()).to.equal(ethers.TypedDataEncoder.hashDomain(domain));
    });
  });

  describe("deposit", function () {
    it("escrows the caller's tokens and emits Deposited with the new deposit", async function () {
      const { ledger, token, alice } = await loadFixture(deploy);
      await expect(ledger.connect(alice).deposit(30n * ONE))
        .to.emit(ledger, "Deposited")
        .withArgs(alice.address, alice.address, 30n * ONE, 30n * ONE);
      await expect(ledger.connect(alice).deposit(12n)).to.changeTokenBalances(token, [alice, ledger], [-12n, 12n]);
      expect(await ledger.accountOf(alice.address)).to.deep.equal([30n * ONE + 12n, 0n]);
    });

    it("depositFor credits another user from the caller's tokens", async function () {
      const { ledger, token, alice, worker1 } = await loadFixture(deploy);
      await expect(ledger.connect(alice).depositFor(worker1.address, 7n * ONE))
        .to.emit(ledger, "Deposited")
        .withArgs(worker1.address, alice.address, 7n * ONE, 7n * ONE);
      expect(await token.balanceOf(alice.address)).to.equal(993n * ONE);
      expect(await ledger.accountOf(worker1.address)).to.deep.equal([7n * ONE, 0n]);
      expect(await ledger.accountOf(alice.address)).to.deep.equal([0n, 0n]);
    });

    it("refuses a zero deposit", async function () {
      const { ledger, alice } = await loadFixture(deploy);
      await expect(ledger.connect(alice).deposit(0)).to.be.revertedWithCustomError(ledger, "ZeroAmount");
      await expect(ledger.connect(alice).depositFor(alice.address, 0)).to.be.revertedWithCustomError(
        ledger,
        "ZeroAmount",
      );
    });

    it("refuses a deposit without allowance or without the tokens", async function () {
      const { ledger, token, worker1, alice } = await loadFixture(deploy);
      await expect(ledger.connect(worker1).deposit(1n)).to.be.revertedWithCustomError(
        token,
        "ERC20InsufficientAllowance",
      );
      await expect(ledger.connect(alice).deposit(1001n * ONE)).to.be.revertedWithCustomError(
        token,
        "ERC20InsufficientBalance",
      );
    });

    it("refuses amounts that do not fit the packed account", async function () {
      const { ledger, token, owner, worker1 } = await loadFixture(deploy);
      const max = 2n ** 128n - 1n;
      await token.mint(worker1.address, 2n ** 130n);
      await token.connect(worker1).approve(await ledger.getAddress(), ethers.MaxUint256);
      await expect(ledger.connect(worker1).deposit(max + 1n))
        .to.be.revertedWithCustomError(ledger, "AmountTooLarge")
        .withArgs(max + 1n);
      await ledger.connect(worker1).deposit(max);
      await expect(ledger.connect(worker1).deposit(1n))
        .to.be.revertedWithCustomError(ledger, "AmountTooLarge")
        .withArgs(max + 1n);
      expect(owner.address).to.not.equal(worker1.address);
    });
  });

  describe("settle", function () {
    it("debits payers, credits workers and the realm fee, and records the receipts root", async function () {
      const { ledger, operator, alice, bob, worker1, worker2 } = await loadFixture(funded);
      const tx = ledger
        .connect(operator)
        .settle(
          1,
          ROOT,
          3,
          [entry(alice.address, 10n * ONE), entry(bob.address, 5n * ONE)],
          [entry(worker1.address, 9n * ONE), entry(worker2.address, 45n * ONE / 10n)],
          15n * ONE / 10n,
        );
      await expect(tx)
        .to.emit(ledger, "Settled")
        .withArgs(1, ROOT, 3, 15n * ONE, 135n * ONE / 10n, 15n * ONE / 10n);
      await expect(tx).to.emit(ledger, "Debited").withArgs(alice.address, 10n * ONE);
      await expect(tx).to.emit(ledger, "Debited").withArgs(bob.address, 5n * ONE);
      await expect(tx).to.emit(ledger, "Credited").withArgs(worker1.address, 9n * ONE);
      await expect(tx).to.emit(ledger, "Credited").withArgs(worker2.address, 45n * ONE / 10n);
      expect(await ledger.lastEpoch()).to.equal(1n);
      expect(await ledger.receiptsRoot(1)).to.equal(ROOT);
      expect(await ledger.accountOf(alice.address)).to.deep.equal([90n * ONE, 0n]);
      expect(await ledger.accountOf(bob.address)).to.deep.equal([45n * ONE, 0n]);
      expect(await ledger.accountOf(worker1.address)).to.deep.equal([0n, 9n * ONE]);
      expect(await ledger.accountOf(worker2.address)).to.deep.equal([0n, 45n * ONE / 10n]);
      expect(await ledger.accountOf(operator.address)).to.deep.equal([0n, 15n * ONE / 10n]);
    });

    it("accepts an epoch without fee and an empty epoch", async function () {
      const { ledger, operator, alice, worker1 } = await loadFixture(funded);
      await ledger.connect(operator).settle(1, ROOT, 1, [entry(alice.address, 2n)], [entry(worker1.address, 2n)], 0);
      expect(await ledger.accountOf(operator.address)).to.deep.equal([0n, 0n]);
      await expect(ledger.connect(operator).settle(2, ethers.ZeroHash, 0, [], [], 0))
        .to.emit(ledger, "Settled")
        .withArgs(2, ethers.ZeroHash, 0, 0, 0, 0);
      expect(await ledger.lastEpoch()).to.equal(2n);
    });

    it("accumulates a worker's credits over epochs", async function () {
      const { ledger, operator, alice, worker1 } = await loadFixture(settledOnce);
      await ledger.connect(operator).settle(2, ROOT, 1, [entry(alice.address, ONE)], [entry(worker1.address, ONE)], 0);
      expect(await ledger.accountOf(worker1.address)).to.deep.equal([0n, 10n * ONE]);
    });

    it("refuses anyone but the operator", async function () {
      const { ledger, mallory, alice, worker1 } = await loadFixture(funded);
      await expect(
        ledger.connect(mallory).settle(1, ROOT, 1, [entry(alice.address, ONE)], [entry(worker1.address, ONE)], 0),
      )
        .to.be.revertedWithCustomError(ledger, "NotOperator")
        .withArgs(mallory.address);
      // a payer crediting itself through its own settle is the same refusal
      await expect(ledger.connect(alice).settle(1, ROOT, 0, [], [entry(alice.address, ONE)], 0))
        .to.be.revertedWithCustomError(ledger, "NotOperator")
        .withArgs(alice.address);
    });

    it("refuses an unbalanced epoch", async function () {
      const { ledger, operator, alice, worker1 } = await loadFixture(funded);
      await expect(
        ledger.connect(operator).settle(1, ROOT, 1, [entry(alice.address, ONE)], [entry(worker1.address, ONE + 1n)], 0),
      )
        .to.be.revertedWithCustomError(ledger, "Unbalanced")
        .withArgs(ONE, ONE + 1n, 0);
      await expect(
        ledger.connect(operator).settle(1, ROOT, 1, [entry(alice.address, ONE)], [entry(worker1.address, ONE)], 1),
      )
        .to.be.revertedWithCustomError(ledger, "Unbalanced")
        .withArgs(ONE, ONE, 1);
      await expect(ledger.connect(operator).settle(1, ROOT, 0, [], [], 5))
        .to.be.revertedWithCustomError(ledger, "Unbalanced")
        .withArgs(0, 0, 5);
      expect(await ledger.lastEpoch()).to.equal(0n);
    });

    it("refuses a replayed, a skipped and a zero epoch", async function () {
      const { ledger, operator, alice, worker1 } = await loadFixture(settledOnce);
      const args = [ROOT, 1, [entry(alice.address, ONE)], [entry(worker1.address, ONE)], 0];
      await expect(ledger.connect(operator).settle(1, ...args))
        .to.be.revertedWithCustomError(ledger, "BadEpoch")
        .withArgs(2, 1);
      await expect(ledger.connect(operator).settle(3, ...args))
        .to.be.revertedWithCustomError(ledger, "BadEpoch")
        .withArgs(2, 3);
      await expect(ledger.connect(operator).settle(0, ...args))
        .to.be.revertedWithCustomError(ledger, "BadEpoch")
        .withArgs(2, 0);
      expect(await ledger.accountOf(alice.address)).to.deep.equal([90n * ONE, 0n]);
    });

    it("refuses to debit a payer beyond their deposit, and leaves every balance alone", async function () {
      const { ledger, operator, alice, bob, worker1 } = await loadFixture(funded);
      await expect(
        ledger
          .connect(operator)
          .settle(
            1,
            ROOT,
            2,
            [entry(alice.address, ONE), entry(bob.address, 51n * ONE)],
            [entry(worker1.address, 52n * ONE)],
            0,
          ),
      )
        .to.be.revertedWithCustomError(ledger, "InsufficientDeposit")
        .withArgs(bob.address, 50n * ONE, 51n * ONE);
      // the same payer twice in one epoch counts against one deposit
      await expect(
        ledger
          .connect(operator)
          .settle(
            1,
            ROOT,
            2,
            [entry(bob.address, 30n * ONE), entry(bob.address, 30n * ONE)],
            [entry(worker1.address, 60n * ONE)],
            0,
          ),
      )
        .to.be.revertedWithCustomError(ledger, "InsufficientDeposit")
        .withArgs(bob.address, 20n * ONE, 30n * ONE);
      expect(await ledger.accountOf(alice.address)).to.deep.equal([100n * ONE, 0n]);
      expect(await ledger.accountOf(worker1.address)).to.deep.equal([0n, 0n]);
      expect(await ledger.lastEpoch()).to.equal(0n);
    });

    it("costs at most 35k gas per payee, however many queries the epoch held", async function () {
      const { ledger, token, operator, owner } = await loadFixture(deploy);
      const n = 50;
      const payers = [];
      for (let i = 0; i < n; i++) {
        const payer = ethers.Wallet.createRandom().address;
        await token.mint(owner.address, ONE);
        await token.approve(await ledger.getAddress(), ONE);
        await ledger.depositFor(payer, ONE);
        payers.push(payer);
      }
      const workers = payers.map(() => ethers.Wallet.createRandom().address);
      const gasFor = async (epoch, receipts) => {
        const tx = await ledger.connect(operator).settle(
          epoch,
          ROOT,
          receipts,
          payers.map((p) => entry(p, 1000n)),
          workers.map((w) => entry(w, 900n)),
          100n * BigInt(n),
        );
        return (await tx.wait()).gasUsed;
      };
      const firstEpoch = await gasFor(1, 10); // every worker credited for the first time
      const busyEpoch = await gasFor(2, 1_000_000); // same payees, 100,000x the queries
      expect(firstEpoch / BigInt(n)).to.be.lessThanOrEqual(35_000n);
      expect(busyEpoch).to.be.lessThanOrEqual(firstEpoch);
    });
  });

  describe("withdraw", function () {
    it("pays a worker their earnings, in parts, and emits Withdrawn", async function () {
      const { ledger, token, worker1 } = await loadFixture(settledOnce);
      await expect(ledger.connect(worker1).withdraw(4n * ONE)).to.changeTokenBalances(
        token,
        [worker1, ledger],
        [4n * ONE, -4n * ONE],
      );
      await expect(ledger.connect(worker1).withdraw(5n * ONE))
        .to.emit(ledger, "Withdrawn")
        .withArgs(worker1.address, 5n * ONE);
      expect(await ledger.accountOf(worker1.address)).to.deep.equal([0n, 0n]);
    });

    it("lets the operator withdraw the realm fee", async function () {
      const { ledger, token, operator } = await loadFixture(settledOnce);
      await ledger.connect(operator).withdraw(15n * ONE / 10n);
      expect(await token.balanceOf(operator.address)).to.equal(15n * ONE / 10n);
    });

    it("refuses to withdraw more than was earned, twice, or from a deposit", async function () {
      const { ledger, worker1, alice, mallory } = await loadFixture(settledOnce);
      await expect(ledger.connect(worker1).withdraw(9n * ONE + 1n))
        .to.be.revertedWithCustomError(ledger, "InsufficientEarnings")
        .withArgs(worker1.address, 9n * ONE, 9n * ONE + 1n);
      await ledger.connect(worker1).withdraw(9n * ONE);
      await expect(ledger.connect(worker1).withdraw(1n))
        .to.be.revertedWithCustomError(ledger, "InsufficientEarnings")
        .withArgs(worker1.address, 0n, 1n);
      // a deposit is not earnings: a payer cannot withdraw escrow
      await expect(ledger.connect(alice).withdraw(1n))
        .to.be.revertedWithCustomError(ledger, "InsufficientEarnings")
        .withArgs(alice.address, 0n, 1n);
      await expect(ledger.connect(mallory).withdraw(1n)).to.be.revertedWithCustomError(
        ledger,
        "InsufficientEarnings",
      );
      await expect(ledger.connect(worker1).withdraw(0)).to.be.revertedWithCustomError(ledger, "ZeroAmount");
    });
  });

  describe("refund", function () {
    async function voucher(f, user, amount, { signer = f.operator, nonce, deadline } = {}) {
      const n = nonce ?? (await f.ledger.refundNonce(user.address));
      const d = deadline ?? (await time.latest()) + 3600;
      return { deadline: d, sig: await signRefund(signer, f.ledger, user.address, amount, n, d) };
    }

    it("returns unspent deposit for an operator-signed voucher, once", async function () {
      const f = await loadFixture(settledOnce);
      const { ledger, token, alice } = f;
      const v = await voucher(f, alice, 40n * ONE);
      await expect(ledger.connect(alice).refund(40n * ONE, v.deadline, v.sig))
        .to.emit(ledger, "Refunded")
        .withArgs(alice.address, 40n * ONE, 0);
      expect(await token.balanceOf(alice.address)).to.equal(940n * ONE);
      expect(await ledger.accountOf(alice.address)).to.deep.equal([50n * ONE, 0n]);
      expect(await ledger.refundNonce(alice.address)).to.equal(1n);
      // the same voucher again: its nonce is spent, so it no longer recovers to the operator
      await expect(ledger.connect(alice).refund(40n * ONE, v.deadline, v.sig)).to.be.revertedWithCustomError(
        ledger,
        "BadVoucher",
      );
      const v2 = await voucher(f, alice, 50n * ONE);
      await expect(ledger.connect(alice).refund(50n * ONE, v2.deadline, v2.sig))
        .to.emit(ledger, "Refunded")
        .withArgs(alice.address, 50n * ONE, 1);
    });

    it("refuses a forged, altered, stolen or expired voucher", async function () {
      const f = await loadFixture(funded);
      const { ledger, alice, mallory } = f;
      const forged = await voucher(f, alice, 10n * ONE, { signer: mallory });
      await expect(ledger.connect(alice).refund(10n * ONE, forged.deadline, forged.sig))
        .to.be.revertedWithCustomError(ledger, "BadVoucher")
        .withArgs(mallory.address);
      const good = await voucher(f, alice, 10n * ONE);
      await expect(ledger.connect(alice).refund(11n * ONE, good.deadline, good.sig)).to.be.revertedWithCustomError(
        ledger,
        "BadVoucher",
      );
      await expect(ledger.connect(mallory).refund(10n * ONE, good.deadline, good.sig)).to.be.revertedWithCustomError(
        ledger,
        "BadVoucher",
      );
      const future = await voucher(f, alice, 10n * ONE, { nonce: 1 });
      await expect(ledger.connect(alice).refund(10n * ONE, future.deadline, future.sig)).to.be.revertedWithCustomError(
        ledger,
        "BadVoucher",
      );
      await time.increaseTo(good.deadline + 1);
      await expect(ledger.connect(alice).refund(10n * ONE, good.deadline, good.sig))
        .to.be.revertedWithCustomError(ledger, "VoucherExpired")
        .withArgs(good.deadline);
      await expect(ledger.connect(alice).refund(0, good.deadline, good.sig)).to.be.revertedWithCustomError(
        ledger,
        "ZeroAmount",
      );
      expect(await ledger.accountOf(alice.address)).to.deep.equal([100n * ONE, 0n]);
    });

    it("refuses a voucher for more than the deposit left", async function () {
      const f = await loadFixture(settledOnce);
      const v = await voucher(f, f.bob, 46n * ONE);
      await expect(f.ledger.connect(f.bob).refund(46n * ONE, v.deadline, v.sig))
        .to.be.revertedWithCustomError(f.ledger, "InsufficientDeposit")
        .withArgs(f.bob.address, 45n * ONE, 46n * ONE);
    });
  });

  describe("receipts", function () {
    it("proves each receipt of an epoch against its root, and nothing else", async function () {
      const { ledger, operator, alice, bob, worker1 } = await loadFixture(funded);
      const receipts = [1, 2, 3, 4, 5].map((i) => ({
        guid: `q-${i}`,
        payer: i % 2 ? alice.address : bob.address,
        worker: worker1.address,
        amount: BigInt(i) * 1000n,
        time: 1_700_000_000 + i,
      }));
      const leaves = receipts.map(receiptLeaf);
      const root = merkleRoot(leaves);
      const total = receipts.reduce((s, r) => s + r.amount, 0n);
      const aliceSpent = receipts.filter((r) => r.payer === alice.address).reduce((s, r) => s + r.amount, 0n);
      await ledger
        .connect(operator)
        .settle(
          1,
          root,
          receipts.length,
          [entry(alice.address, aliceSpent), entry(bob.address, total - aliceSpent)],
          [entry(worker1.address, total)],
          0,
        );
      for (let i = 0; i < leaves.length; i++) {
        expect(await ledger.verifyReceipt(1, leaves[i], merkleProof(leaves, i))).to.equal(true);
      }
      const forged = receiptLeaf({ ...receipts[0], amount: 1n });
      expect(await ledger.verifyReceipt(1, forged, merkleProof(leaves, 0))).to.equal(false);
      expect(await ledger.verifyReceipt(2, leaves[0], merkleProof(leaves, 0))).to.equal(false);
    });
  });

  describe("reentrancy", function () {
    async function hostile() {
      const [owner, operator, alice] = await ethers.getSigners();
      const token = await (await ethers.getContractFactory("ReentrantToken")).deploy();
      const ledger = await (await ethers.getContractFactory("RealmLedger")).deploy(
        await token.getAddress(),
        operator.address,
      );
      const tokenAddr = await token.getAddress();
      const ledgerAddr = await ledger.getAddress();
      // the hostile token is itself a user of the ledger: it deposits 100 ...
      await token.aim(ledgerAddr);
      await token.mint(tokenAddr, 1000n);
      await token.approveFor(ledgerAddr, ethers.MaxUint256);
      await token.mint(alice.address, 1000n);
      await token.connect(alice).approve(ledgerAddr, ethers.MaxUint256);
      await ledger.connect(alice).deposit(500n);
      await token.kick(ledger.interface.encodeFunctionData("deposit", [100n]));
      // ... and earns 100 from alice's queries
      await ledger.connect(operator).settle(1, ROOT, 1, [entry(alice.address, 100n)], [entry(tokenAddr, 100n)], 0);
      return { owner, operator, alice, token, ledger, tokenAddr, ledgerAddr };
    }

    it("a token that re-enters withdraw during the payout gets nothing twice", async function () {
      const { token, ledger, tokenAddr, ledgerAddr } = await loadFixture(hostile);
      await token.arm(ledger.interface.encodeFunctionData("withdraw", [100n]));
      await expect(
        token.kick(ledger.interface.encodeFunctionData("withdraw", [100n])),
      ).to.be.revertedWithCustomError(ledger, "ReentrancyGuardReentrantCall");
      expect(await ledger.accountOf(tokenAddr)).to.deep.equal([100n, 100n]);
      expect(await token.balanceOf(ledgerAddr)).to.equal(600n);
    });

    it("a token that re-enters refund with the same voucher gets nothing twice", async function () {
      const { operator, token, ledger, tokenAddr, ledgerAddr } = await loadFixture(hostile);
      const deadline = (await time.latest()) + 3600;
      const sig = await signRefund(operator, ledger, tokenAddr, 100n, 0, deadline);
      const call = ledger.interface.encodeFunctionData("refund", [100n, deadline, sig]);
      await token.arm(call);
      await expect(token.kick(call)).to.be.revertedWithCustomError(ledger, "ReentrancyGuardReentrantCall");
      expect(await ledger.refundNonce(tokenAddr)).to.equal(0n);
      // disarmed, the voucher works exactly once
      await token.disarm();
      await token.kick(call);
      await expect(token.kick(call)).to.be.revertedWithCustomError(ledger, "BadVoucher");
      expect(await ledger.accountOf(tokenAddr)).to.deep.equal([0n, 100n]);
    });

    it("a token that re-enters deposit cannot double-count a transfer", async function () {
      const { token, ledger, tokenAddr, ledgerAddr } = await loadFixture(hostile);
      const call = ledger.interface.encodeFunctionData("deposit", [10n]);
      await token.arm(call);
      await expect(token.kick(call)).to.be.revertedWithCustomError(ledger, "ReentrancyGuardReentrantCall");
      expect(await ledger.accountOf(tokenAddr)).to.deep.equal([100n, 100n]);
    });
  });
});
