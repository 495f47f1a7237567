from synth2real.cli import main

main()
