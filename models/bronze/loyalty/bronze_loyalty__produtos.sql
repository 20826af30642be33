{{ lago_cdc.bronze_cdc('loyalty', 'produtos') }}
