{{ lago_mago.bronze_cdc('loyalty', 'produtos') }}
